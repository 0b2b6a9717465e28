// Build-time fix for TorchSharp on distros whose libstdc++ predates GCC 13 (e.g. Debian 12).
// libLibTorchSharp.so carries a version requirement (GLIBCXX_3.4.32) in .gnu.version_r whose only
// symbol is never relocated. Setting VER_FLG_WEAK on that Vernaux entry makes the dynamic loader
// accept the library when the version is missing. The edit is one flag bit, idempotent, and is done
// only where the machine's libstdc++ lacks the version.
using System;
using System.IO;
using System.Linq;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public class MarkGlibcxxRequirementWeak : Task
{
    [Required] public string[] Directories { get; set; } = Array.Empty<string>();
    [Required] public string VersionName { get; set; } = "";

    const uint ShtGnuVerneed = 0x6ffffffe;
    const ushort VerFlgWeak = 0x2;

    static readonly string[] LibstdcxxCandidates =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
    };

    public override bool Execute()
    {
        var libstdcxx = LibstdcxxCandidates.FirstOrDefault(File.Exists);
        if (libstdcxx == null || Contains(File.ReadAllBytes(libstdcxx), Encoding.ASCII.GetBytes(VersionName)))
            return true; // Not needed here (or no libstdc++ to judge by): leave the library untouched.

        foreach (var dir in Directories.Where(d => !string.IsNullOrWhiteSpace(d) && System.IO.Directory.Exists(d)).Distinct())
            foreach (var lib in System.IO.Directory.EnumerateFiles(dir, "libLibTorchSharp.so", SearchOption.AllDirectories))
            {
                try
                {
                    if (MarkWeak(lib)) Log.LogMessage(MessageImportance.Normal, $"Marked {VersionName} weak in {lib}");
                }
                catch (Exception e) when (e is IOException || e is InvalidDataException || e is UnauthorizedAccessException)
                {
                    Log.LogWarning($"Could not patch {lib}: {e.Message}");
                }
            }
        return !Log.HasLoggedErrors;
    }

    // Returns true when the file was changed; false when already weak or the version is not required.
    bool MarkWeak(string path)
    {
        var elf = File.ReadAllBytes(path);
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("not ELF64 little-endian");

        ulong shoff = BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A), shnum = BitConverter.ToUInt16(elf, 0x3C);
        for (int s = 0; s < shnum; s++)
        {
            int sh = checked((int)shoff + s * shentsize);
            if (BitConverter.ToUInt32(elf, sh + 4) != ShtGnuVerneed) continue;
            int verneed = checked((int)BitConverter.ToUInt64(elf, sh + 0x18));
            int link = (int)BitConverter.ToUInt32(elf, sh + 0x28);
            int strtab = checked((int)BitConverter.ToUInt64(elf, checked((int)shoff + link * shentsize) + 0x18));
            uint wantedHash = ElfHash(VersionName);

            for (int vn = verneed; ; )
            {
                int count = BitConverter.ToUInt16(elf, vn + 2);
                int aux = vn + (int)BitConverter.ToUInt32(elf, vn + 8);
                for (int a = 0; a < count; a++)
                {
                    uint hash = BitConverter.ToUInt32(elf, aux);
                    int flagsAt = aux + 4;
                    int nameAt = strtab + (int)BitConverter.ToUInt32(elf, aux + 8);
                    if (hash == wantedHash && ReadCString(elf, nameAt) == VersionName)
                    {
                        ushort flags = BitConverter.ToUInt16(elf, flagsAt);
                        if ((flags & VerFlgWeak) != 0) return false;
                        BitConverter.GetBytes((ushort)(flags | VerFlgWeak)).CopyTo(elf, flagsAt);
                        var tmp = path + ".patching";
                        File.WriteAllBytes(tmp, elf);
                        File.Replace(tmp, path, null); // a rename: never a half-written library
                        return true;
                    }
                    uint nextAux = BitConverter.ToUInt32(elf, aux + 12);
                    if (nextAux == 0) break;
                    aux += (int)nextAux;
                }
                uint next = BitConverter.ToUInt32(elf, vn + 12);
                if (next == 0) break;
                vn += (int)next;
            }
        }
        return false;
    }

    static uint ElfHash(string name)
    {
        uint h = 0;
        foreach (char c in name)
        {
            h = (h << 4) + c;
            uint g = h & 0xf0000000;
            if (g != 0) h ^= g >> 24;
            h &= ~g;
        }
        return h;
    }

    static string ReadCString(byte[] bytes, int at)
    {
        int end = Array.IndexOf(bytes, (byte)0, at);
        return Encoding.ASCII.GetString(bytes, at, end - at);
    }

    static bool Contains(byte[] haystack, byte[] needle)
    {
        for (int i = Array.IndexOf(haystack, needle[0]); i >= 0 && i <= haystack.Length - needle.Length;
             i = Array.IndexOf(haystack, needle[0], i + 1))
        {
            int k = 1;
            while (k < needle.Length && haystack[i + k] == needle[k]) k++;
            if (k == needle.Length) return true;
        }
        return false;
    }
}
