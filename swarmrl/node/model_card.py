"""The model card (``README.md``) of an exported model: what was trained, how, and how well.

Everything comes from the node's effective config (``DATA/node-config.yaml``) and its journal; nothing is
typed in by hand. Torch-free.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from swarmrl.config import NodeConfig
from swarmrl.config.sections import EMBEDDED_MODEL
from swarmrl.node.records import rounds_of


@dataclass(frozen=True)
class CardFacts:
    """What the export knows beyond the config: the checkpoint and the exported files."""

    round: int
    policy_version: int
    dtype: str
    lora_merged: bool
    parameters: int
    architecture: str


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def journal_summary(records: list[dict[str, Any]], up_to: int) -> dict[str, Any]:
    """Reward, accuracy, groups and the last evaluation of the rounds up to the exported checkpoint."""
    rounds = [r for r in rounds_of(records) if r.round <= up_to]
    window = max(1, min(20, len(rounds) // 4 or 1))
    first, last = rounds[:window], rounds[-window:]
    evals = [r for r in rounds if r.eval_accuracy is not None]
    last_eval = evals[-1] if evals else None
    return {
        "rounds": len(rounds),
        "window": window,
        "reward_first": _mean([r.reward_mean for r in first]),
        "reward_last": _mean([r.reward_mean for r in last]),
        "accuracy_first": _mean([r.accuracy for r in first]),
        "accuracy_last": _mean([r.accuracy for r in last]),
        "local_groups": sum(r.local_groups for r in rounds),
        "external_groups": sum(r.external_groups for r in rounds),
        "eval_round": last_eval.round if last_eval else None,
        "eval_accuracy": last_eval.eval_accuracy if last_eval else None,
        "eval_by_source": dict(last_eval.eval_by_source or {}) if last_eval else {},
        "first_eval_accuracy": evals[0].eval_accuracy if evals else None,
        "first_eval_round": evals[0].round if evals else None,
    }


def _base_model(cfg: NodeConfig) -> str:
    if cfg.model.name != EMBEDDED_MODEL:
        return f"`{cfg.model.name}`"
    t = cfg.model.tiny
    return (
        f"`{EMBEDDED_MODEL}` (swarmrl's embedded Qwen2-architecture model: hidden size {t.hidden_size}, "
        f"layers {t.layers}, heads {t.heads}, MLP {t.intermediate_size}, character-level tokenizer, "
        f"{t.warmstart_steps} supervised warm-start steps, seed {cfg.node.seed})"
    )


def _tasks(cfg: NodeConfig) -> str:
    parts = []
    for s in cfg.tasks.sources:
        extra = f" {s.config}" if s.config else ""
        parts.append(f"`{s.source}/{s.dataset}`{extra} (weight {s.weight:g})")
    return (
        ", ".join(parts) + f"; dataset seed {cfg.tasks.seed}, {cfg.tasks.size} items per dataset; the first "
        f"{cfg.tasks.eval_questions} indices of every source are held out (never sampled for training)"
    )


def _rewards(cfg: NodeConfig) -> str:
    r = cfg.rewards
    mods = ", ".join(f"`{m.name}` x {m.weight:g}" + (f" {m.params}" if m.params else "") for m in r.modules)
    out = f"{mods}; combine: {r.combine or 'weighted sum'}"
    if r.credit:
        out += f"; credit: {r.credit}"
    if r.segment:
        out += f"; segment: {r.segment}"
    return out + "; accuracy = exact match of the extracted answer"


def _swarm(cfg: NodeConfig, j: dict[str, Any]) -> str:
    s, sw = cfg.sampling, cfg.swarm
    where = (
        "alone (no swarm)" if sw.transport == "none" else f"transport `{sw.transport}`, swarm `{sw.swarm_id}`"
    )
    return (
        f"{where}; per round {s.local_groups} local + {s.external_groups} external groups "
        f"(strategy `{s.strategy}`, fill with local: {s.fill_with_local}), {cfg.generation.num_completions} "
        f"completions per group; trained on {j['local_groups']} local and {j['external_groups']} external "
        "groups in all"
    )


def _trainer(cfg: NodeConfig, facts: CardFacts) -> str:
    t = cfg.trainer
    lora = f"LoRA rank {cfg.model.lora_rank}, merged into the weights" if facts.lora_merged else "all weights"
    return (
        f"GRPO-family update (advantage `{t.advantage}`, clip {t.clip_low:g}/{t.clip_high:g}, KL coef "
        f"{t.kl_coef:g}), lr {t.lr:g}, {t.updates_per_round} optimizer steps per round, max staleness "
        f"{t.max_staleness}; {lora}"
    )


def _evaluation(j: dict[str, Any]) -> str:
    if j["eval_accuracy"] is None:
        return "no periodic evaluation in the journal (node.eval_every = 0); run `swarm-node eval --model .`"
    out = f"greedy held-out exact match {_fmt(j['eval_accuracy'])} at round {j['eval_round']}"
    if j["first_eval_round"] is not None and j["first_eval_round"] != j["eval_round"]:
        out += f" (round {j['first_eval_round']}: {_fmt(j['first_eval_accuracy'])})"
    if j["eval_by_source"]:
        out += "; per source: " + ", ".join(f"`{k}` {_fmt(v)}" for k, v in j["eval_by_source"].items())
    return out


def model_card(cfg: NodeConfig, facts: CardFacts, journal: list[dict[str, Any]]) -> str:
    """The README.md of the export (with Hugging Face front matter)."""
    j = journal_summary(journal, facts.round)
    front = ["---", "library_name: transformers", "pipeline_tag: text-generation"]
    if (
        cfg.model.name != EMBEDDED_MODEL
        and "/" in cfg.model.name
        and not cfg.model.name.startswith((".", "/", "~"))
    ):
        front.append(f"base_model: {cfg.model.name}")
    front += ["tags:", "- swarmrl", "- grpo", "- sapo", "- reinforcement-learning", "---", ""]
    w = j["window"]
    rows = [
        ("base model", _base_model(cfg)),
        ("architecture", f"{facts.architecture}, {facts.parameters:,} parameters, saved as {facts.dtype}"),
        ("rounds", f"{facts.round} (checkpoint `ckpt-{facts.round:08d}`; journal: {j['rounds']} rounds)"),
        ("policy version", f"{facts.policy_version} (optimizer steps applied)"),
        ("tasks", _tasks(cfg)),
        ("reward pipeline", _rewards(cfg)),
        ("swarm", _swarm(cfg, j)),
        ("training", _trainer(cfg, facts)),
        (
            "reward / accuracy",
            f"mean reward {_fmt(j['reward_first'])} -> {_fmt(j['reward_last'])}, sampled accuracy "
            f"{_fmt(j['accuracy_first'])} -> {_fmt(j['accuracy_last'])} (first vs last {w} rounds)",
        ),
        ("final evaluation", _evaluation(j)),
    ]
    table = ["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    g = cfg.generation
    usage = f"""## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tok = AutoTokenizer.from_pretrained("PATH")
model = AutoModelForCausalLM.from_pretrained("PATH")
inputs = tok("3+4=", return_tensors="pt")  # the prompt format of the training tasks
out = model.generate(**inputs, do_sample=False, max_new_tokens={g.max_new_tokens})
print(tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))
```

`generation_config.json` holds the node's sampling settings (temperature {g.temperature:g}, top-p {g.top_p:g},
{g.max_new_tokens} new tokens); pass `do_sample=False` for greedy answers as evaluated.

## Evaluate, continue training

```bash
swarm-node eval --model PATH --samples 8        # greedy pass@1 and pass@k per task source, held-out questions
swarm-node run --model PATH --data-dir ./next   # train on from these weights
```

`swarmrl-export.json` records the tasks and generation settings that `swarm-node eval --model` uses by default.
"""
    title = f"# swarmrl policy: round {facts.round}, policy version {facts.policy_version}\n"
    intro = (
        "\nTrained with swarmrl's `swarm-node`: GRPO on verifiable tasks, sharing rollouts "
        "with a swarm (SAPO). Exported by `swarm-node export`.\n\n"
    )
    return "\n".join(front) + title + intro + "\n".join(table) + "\n\n" + usage
