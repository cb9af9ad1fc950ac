"""Summaries of the SAPO experiment: paired statistics over seeds, markdown tables, the JSON and the plot.

Measures (per regime, arm and seed):

- ``cumulative``: sum over nodes and rounds of the mean reward of each node's *own generated* completions
  (what the node can do; the journal's ``reward_mean``).
- ``paper_cumulative``: the same sum over the groups *trained on* (``trained_reward_mean``). It counts the
  external groups that survived the sampler's filter, so it is biased upward for every arm that samples
  with a filter; shown because it is the paper's kind of figure, labelled as such.
- ``reward_per_token`` (compute-fair, generation): each node's mean own reward over its first T generated
  completion tokens, token-weighted, where T is the smallest number of tokens any arm's node of the same
  seed generated in the run (a node that takes J external groups generates fewer itself: what it reaches per
  token it spent is the swarm's gift on hardware where generation is most of an RL step); mean over nodes.
- ``reward_per_second`` (compute-fair, wall): the same over each node's first S seconds of rounds, S the
  smallest total any arm's node took (nodes share one process, so this includes their contention).
- ``tokens_to_reach``: generated tokens (swarm total) at which the arm's moving-average own reward first
  reaches the B/0 baseline's final moving average, as a share of the baseline's total tokens (None: never).
- ``eval_accuracy``: greedy exact-match accuracy on held-out questions after the last round (mean over nodes).
- ``paired_to_baseline``: per measure, the arm's value over the B/0 baseline's *of the same seed*
  (ratio) and minus it (difference), mean ± sd/se over seeds, wins, and a verdict.
- ``oscillation``: standard deviation, over the last half of the rounds, of the moving average of the
  swarm's per-round reward (mean over nodes).
- greedy exact-match accuracy per node after the last round, on held-out questions never trained on.

"Worse beyond seed noise" means the mean paired difference to the reference is below zero by more than two
standard errors (over seeds); "better beyond noise" the mirror image.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

#: The SAPO paper's cumulative rewards (Qwen2.5-0.5B swarm, its Table 1) for the splits of 8 groups.
PAPER = {"8/0": 561.79, "6/2": 854.43, "4/4": 1093.31, "2/6": 945.87}
#: Greedy decoding has "collapsed" when one answer string is given to at least this share of the held-out
#: questions (the answers of these tasks are spread over dozens of values), or when greedy accuracy is
#: below COLLAPSE_SHARE of the node's late sampled reward.
COLLAPSE_TOP_SHARE = 0.5
COLLAPSE_SHARE = 0.5
COLLAPSE_MIN_REWARD = 0.05
#: Collapsed node-runs listed by name in the markdown (all of them are in the JSON).
MAX_LISTED = 6


def _finite(xs: list[float]) -> list[float]:
    return [float(x) for x in xs if math.isfinite(x)]


def _mean(xs: list[float]) -> float:
    """Mean of the finite values (NaN when there are none, e.g. ratios to a zero baseline)."""
    f = _finite(xs)
    return statistics.fmean(f) if f else float("nan")


def _sd(xs: list[float]) -> float:
    f = _finite(xs)
    return statistics.stdev(f) if len(f) > 1 else 0.0


def _se(xs: list[float]) -> float:
    return _sd(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("inf")


def moving_average(xs: list[float], window: int) -> list[float]:
    """Trailing moving average (the first points average what exists so far)."""
    out, acc = [], 0.0
    for i, x in enumerate(xs):
        acc += x
        if i >= window:
            acc -= xs[i - window]
        out.append(acc / min(i + 1, window))
    return out


def swarm_curve(nodes: list[dict[str, Any]]) -> list[float]:
    """Per round: the mean over nodes of their own completions' mean reward."""
    length = min(len(n["reward_mean"]) for n in nodes)
    return [_mean([n["reward_mean"][r] for n in nodes]) for r in range(length)]


def budget_mean(values: list[float], costs: list[float], budget: float) -> float:
    """Cost-weighted mean of ``values`` over the first ``budget`` units of cost (the last round counts with
    the part of its cost that fits): the mean own reward a node showed while spending that budget."""
    if budget <= 0:
        return float("nan")
    acc, spent = 0.0, 0.0
    for v, c in zip(values, costs, strict=False):
        take = min(c, budget - spent)
        if take <= 0:
            break
        acc += v * take
        spent += take
    return acc / spent if spent > 0 else float("nan")


def tokens_to_reach(
    curve: list[float], tokens: list[float], target: float, window: int, base_total: float
) -> float | None:
    """Tokens (as a share of ``base_total``) after which the moving average of ``curve`` first reaches
    ``target``; None when it never does."""
    total = 0.0
    for ma, t in zip(moving_average(curve, window), tokens, strict=False):
        total += t
        if ma >= target:
            return total / base_total if base_total > 0 else None
    return None


def _node_costs(nodes: list[dict[str, Any]], key: str) -> list[float]:
    return [float(sum(n.get(key) or [])) for n in nodes]


def compute_fair(runs: dict[str, dict[str, Any]], base: str, window: int) -> dict[str, dict[str, Any]]:
    """Measures (b), (c) and tokens-to-reach of every arm of one (regime, seed), from the arms' nodes."""
    arms = list(runs)
    n_nodes = min(len(runs[a]["nodes"]) for a in arms)
    tok_budget = [
        min(_node_costs(runs[a]["nodes"], "generation_tokens")[i] for a in arms) for i in range(n_nodes)
    ]
    sec_budget = [
        min(_node_costs(runs[a]["nodes"], "round_seconds")[i] for a in arms) for i in range(n_nodes)
    ]
    base_nodes = runs[base]["nodes"]
    base_curve = swarm_curve(base_nodes)
    late = max(1, min(window, len(base_curve)))
    target = _mean(moving_average(base_curve, window)[-late:]) if base_curve else float("nan")
    base_total = sum(_node_costs(base_nodes, "generation_tokens"))
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        nodes = runs[arm]["nodes"][:n_nodes]
        length = min(len(n["reward_mean"]) for n in nodes)
        swarm_tokens = [
            sum(float((n.get("generation_tokens") or [0] * length)[r]) for n in nodes) for r in range(length)
        ]
        out[arm] = {
            "reward_per_token": _mean(
                [
                    budget_mean(n["reward_mean"], n.get("generation_tokens") or [], b)
                    for n, b in zip(nodes, tok_budget, strict=True)
                ]
            ),
            "reward_per_second": _mean(
                [
                    budget_mean(n["reward_mean"], n.get("round_seconds") or [], b)
                    for n, b in zip(nodes, sec_budget, strict=True)
                ]
            ),
            "tokens": sum(_node_costs(nodes, "generation_tokens")),
            "tokens_to_reach": tokens_to_reach(swarm_curve(nodes), swarm_tokens, target, window, base_total),
        }
    return out


def run_summary(nodes: list[dict[str, Any]], window: int) -> dict[str, Any]:
    """Measures of one (regime, arm, seed) run that need no other arm."""
    curve = swarm_curve(nodes)
    ma = moving_average(curve, window)
    late = max(1, len(curve) // 4)
    per_node = []
    for n in nodes:
        sampled = _mean(n["reward_mean"][-late:])
        greedy = n["eval_accuracy"]
        top = n.get("greedy_top_share", 0.0)
        top0 = n.get("greedy_top_share_start", 0.0)
        per_node.append(
            {
                "name": n["name"],
                "eval_accuracy": greedy,
                "eval_accuracy_start": n.get("eval_accuracy_start", float("nan")),
                "greedy_top_share": top,
                "greedy_top_answer": n.get("greedy_top_answer", ""),
                "greedy_top_share_start": n.get("greedy_top_share_start", float("nan")),
                "late_sampled_reward": sampled,
                "collapsed": bool(
                    (top >= COLLAPSE_TOP_SHARE and not top0 >= COLLAPSE_TOP_SHARE)
                    or (sampled >= COLLAPSE_MIN_REWARD and greedy < COLLAPSE_SHARE * sampled)
                ),
                "degenerate_from_start": bool(top >= COLLAPSE_TOP_SHARE and top0 >= COLLAPSE_TOP_SHARE),
            }
        )
    return {
        "cumulative": sum(sum(n["reward_mean"]) for n in nodes),
        "paper_cumulative": sum(sum(n["trained_reward_mean"]) for n in nodes),
        "zero_adv_fraction": _mean([z for n in nodes for z in n["zero_variance_fraction"]]),
        "realised_local": _mean([x for n in nodes for x in n["local_groups"]]),
        "realised_external": _mean([x for n in nodes for x in n["external_groups"]]),
        "oscillation": _sd(ma[len(ma) // 2 :]),
        "eval_accuracy": _mean([n["eval_accuracy"] for n in nodes]),
        "nodes": per_node,
        "ma_curve": [round(x, 4) for x in ma],
    }


def _paired(a: list[float], b: list[float]) -> dict[str, float]:
    diff = [x - y for x, y in zip(a, b, strict=True)]
    ratio = [x / y if y else float("nan") for x, y in zip(a, b, strict=True)]
    return {
        "ratio_mean": _mean(ratio),
        "ratio_sd": _sd(ratio),
        "ratio_min": min(_finite(ratio), default=float("nan")),
        "ratio_max": max(_finite(ratio), default=float("nan")),
        "diff_mean": _mean(diff),
        "diff_se": _se(diff),
        "wins": sum(1 for d in diff if d > 0),
        "n": len(diff),
    }


def verdict(p: dict[str, float]) -> str:
    """'worse', 'better' (beyond two standard errors of the paired difference) or 'tie'."""
    if p["diff_mean"] + 2 * p["diff_se"] < 0:
        return "worse"
    if p["diff_mean"] - 2 * p["diff_se"] > 0:
        return "better"
    return "tie"


#: The measures paired to the baseline (in this order in the JSON and the tables).
MEASURES = ("cumulative", "reward_per_token", "reward_per_second", "eval_accuracy")


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    """Per regime and arm: per-seed measures, their mean and spread, paired ratios to the baseline."""
    settings = doc["settings"]
    arms = [a["name"] for a in settings["arms"]]
    base = arms[0]
    window = settings["ma_window"]
    out: dict[str, Any] = {}
    for regime in [r["name"] for r in settings["regimes"]]:
        units = sorted((u for u in doc["units"] if u["regime"] == regime), key=lambda u: u["seed"])
        runs = {arm: [run_summary(u["arms"][arm]["nodes"], window) for u in units] for arm in arms}
        fair = [compute_fair(u["arms"], base, window) for u in units]
        for arm in arms:
            for r, f in zip(runs[arm], fair, strict=True):
                r.update(f[arm])
        rows: dict[str, Any] = {}
        for arm in arms:
            rs = runs[arm]
            cum = [r["cumulative"] for r in rs]
            n_nodes = len(rs[0]["nodes"])
            reach = [r["tokens_to_reach"] for r in rs]
            rows[arm] = {
                "seeds": [u["seed"] for u in units],
                "cumulative": cum,
                "cumulative_mean": _mean(cum),
                "cumulative_sd": _sd(cum),
                "paired_to_baseline": {
                    m: _paired([r[m] for r in rs], [r[m] for r in runs[base]]) for m in MEASURES
                },
                **{f"{m}_per_seed": [r[m] for r in rs] for m in MEASURES[1:]},
                "tokens_per_seed": [r["tokens"] for r in rs],
                "tokens_ratio_mean": _mean(
                    [
                        r["tokens"] / b["tokens"] if b["tokens"] else float("nan")
                        for r, b in zip(rs, runs[base], strict=True)
                    ]
                ),
                "tokens_to_reach_per_seed": reach,
                "tokens_to_reach_mean": _mean([x for x in reach if x is not None]),
                "tokens_to_reach_se": _se([x for x in reach if x is not None]),
                "reached": sum(1 for x in reach if x is not None),
                "paper_cumulative_mean": _mean([r["paper_cumulative"] for r in rs]),
                "paper_cumulative_sd": _sd([r["paper_cumulative"] for r in rs]),
                "zero_adv_fraction": _mean([r["zero_adv_fraction"] for r in rs]),
                "realised_local": _mean([r["realised_local"] for r in rs]),
                "realised_external": _mean([r["realised_external"] for r in rs]),
                "oscillation_mean": _mean([r["oscillation"] for r in rs]),
                "oscillation_sd": _sd([r["oscillation"] for r in rs]),
                "eval_accuracy_mean": _mean([r["eval_accuracy"] for r in rs]),
                "eval_accuracy_sd": _sd([r["eval_accuracy"] for r in rs]),
                "eval_accuracy_per_node": [
                    _mean([r["nodes"][i]["eval_accuracy"] for r in rs]) for i in range(n_nodes)
                ],
                "eval_accuracy_start_per_node": [
                    _mean([r["nodes"][i]["eval_accuracy_start"] for r in rs]) for i in range(n_nodes)
                ],
                "greedy_top_share_per_node": [
                    _mean([r["nodes"][i]["greedy_top_share"] for r in rs]) for i in range(n_nodes)
                ],
                "late_sampled_reward_per_node": [
                    _mean([r["nodes"][i]["late_sampled_reward"] for r in rs]) for i in range(n_nodes)
                ],
                "degenerate_from_start": sum(n["degenerate_from_start"] for r in rs for n in r["nodes"]),
                "collapsed": [
                    {"seed": u["seed"], **node}
                    for u, r in zip(units, rs, strict=True)
                    for node in r["nodes"]
                    if node["collapsed"]
                ],
                "ma_curve_mean": [
                    _mean([r["ma_curve"][i] for r in rs]) for i in range(min(len(r["ma_curve"]) for r in rs))
                ],
            }
        out[regime] = {"baseline": base, "arms": rows, "checks": _checks(settings, rows, base)}
    return out


def _checks(settings: dict[str, Any], rows: dict[str, Any], base: str) -> dict[str, Any]:
    """The issue's claims about the adaptive sampler, as paired verdicts over seeds."""
    checks: dict[str, Any] = {}
    fixed = [
        a["name"]
        for a in settings["arms"]
        if a["strategy"] == "nonzero_advantage_uniform" and not a["filter_local"]
    ]
    best = max(fixed, key=lambda a: rows[a]["cumulative_mean"])
    checks["best_fixed_split"] = best
    if "adaptive" in rows:
        ad = rows["adaptive"]["cumulative"]
        checks["adaptive_vs_baseline"] = verdict(rows["adaptive"]["paired_to_baseline"]["cumulative"])
        vs_best = _paired(ad, rows[best]["cumulative"])
        checks["adaptive_vs_best_fixed"] = {**vs_best, "verdict": verdict(vs_best)}
    for arm, row in rows.items():
        checks.setdefault("verdicts_vs_baseline", {})[arm] = (
            "baseline" if arm == base else verdict(row["paired_to_baseline"]["cumulative"])
        )
        checks.setdefault("verdicts_by_measure", {})[arm] = {
            m: "baseline" if arm == base else verdict(row["paired_to_baseline"][m]) for m in MEASURES
        }
    return checks


# -- rendering ---------------------------------------------------------------------------------------------
def _fmt(x: float, digits: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def markdown(doc: dict[str, Any], summary: dict[str, Any]) -> str:
    """The paper-shaped table per regime, accuracy per node, the adaptive checks and oscillation."""
    settings = doc["settings"]
    regimes = {r["name"]: r for r in settings["regimes"]}
    lines = [
        "# SAPO experiment",
        "",
        f"{settings['nodes']} nodes, {settings['rounds']} rounds, per-round budget {settings['budget']} "
        f"groups, seeds {list(settings['seeds'])}, transport {settings['transport']}, tiny model hidden "
        f"{settings['hidden_size']} x {settings['layers']} layer(s), fill_with_local={settings['fill_with_local']}"
        f"; {_compute_minutes(doc):.1f} worker-minutes in {settings['workers']} worker process(es)"
        f" (last invocation {doc['wall_seconds'] / 60:.1f} min of wall time; finished units are reused).",
        "",
    ]
    for regime, block in summary.items():
        rg, base, rows = regimes[regime], block["baseline"], block["arms"]
        lines += [
            f"## Regime `{regime}`: {rg['completions']} completions per question, "
            f"warm start {rg['warmstart_steps']} steps",
            "",
            "Cumulative reward = sum over nodes and rounds of the mean reward of each node's own completions. "
            "Ratio = paired per seed to the baseline. Paper-style = over the groups trained on (counts filtered "
            "external groups: biased upward). J = mean external groups actually trained on per round.",
            "",
            f"| arm | J | cumulative reward (mean ± sd) | ratio to {base} (mean ± sd [min, max]) | wins | vs {base} "
            "| paper-style (biased up) | zero-adv own groups | last-half MA sd | greedy acc |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for arm, row in rows.items():
            p = row["paired_to_baseline"]["cumulative"]
            lines.append(
                f"| {arm} | {row['realised_external']:.2f} | {_fmt(row['cumulative_mean'])} ± "
                f"{_fmt(row['cumulative_sd'])} | {p['ratio_mean']:.3f} ± {p['ratio_sd']:.3f} "
                f"[{p['ratio_min']:.2f}, {p['ratio_max']:.2f}] | {p['wins']}/{p['n']} | "
                f"{block['checks']['verdicts_vs_baseline'][arm]} | {_fmt(row['paper_cumulative_mean'])} | "
                f"{row['zero_adv_fraction']:.2f} | {row['oscillation_mean']:.4f} | "
                f"{row['eval_accuracy_mean']:.3f} |"
            )
        lines += fair_table(rows, base, block["checks"])
        paper_base = PAPER["8/0"]
        lines += [
            "",
            "Paper (Qwen2.5-0.5B swarm, Table 1): "
            + ", ".join(f"{k} {v} (x{v / paper_base:.2f})" for k, v in PAPER.items()),
            "",
            "Greedy exact-match accuracy per node on held-out questions, mean over seeds (warm-start focus "
            "in brackets): before -> after training, the late sampled reward (last quarter of rounds) and the "
            "share of questions that get the most common greedy answer (1.0 = one answer for everything):",
            "",
            "| arm | " + " | ".join(_node_label(i) for i in range(settings["nodes"])) + " |",
            "|---|" + "---|" * settings["nodes"],
        ]
        for arm, row in rows.items():
            cells = [
                f"{g0:.3f} -> {g:.3f} (sampled {s:.3f}, top {t:.2f})"
                for g0, g, s, t in zip(
                    row["eval_accuracy_start_per_node"],
                    row["eval_accuracy_per_node"],
                    row["late_sampled_reward_per_node"],
                    row["greedy_top_share_per_node"],
                    strict=True,
                )
            ]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        collapsed = [(arm, c) for arm, row in rows.items() for c in row["collapsed"]]
        lines += [
            "",
            "Greedy decoding already degenerate after the warm start and still at the end (one answer for "
            f">= {COLLAPSE_TOP_SHARE:.0%} of held-out questions), node-runs per arm: "
            + ", ".join(f"{arm} {row['degenerate_from_start']}" for arm, row in rows.items())
            + ".",
            "",
            f"Greedy collapse during training (one greedy answer for >= {COLLAPSE_TOP_SHARE:.0%} of held-out "
            f"questions at the end but not at the start, or greedy accuracy < {COLLAPSE_SHARE:.0%} of the late "
            "sampled reward): ",
        ]
        lines[-1] += (
            ", ".join(f"{arm} {len(row['collapsed'])}" for arm, row in rows.items()) + " node-runs"
            if collapsed
            else "none."
        )
        worst = sorted(collapsed, key=lambda ac: -ac[1]["greedy_top_share"])[:MAX_LISTED]
        lines += [
            f"- {arm} seed {c['seed']} {c['name']}: greedy {c['eval_accuracy_start']:.3f} -> "
            f"{c['eval_accuracy']:.3f}, late sampled reward {c['late_sampled_reward']:.3f}, answers "
            f"{c['greedy_top_answer']!r} to {c['greedy_top_share']:.0%} of questions "
            f"(at start its top answer covered {c['greedy_top_share_start']:.0%})"
            for arm, c in worst
        ]
        if len(collapsed) > len(worst):
            lines.append(
                f"- ... {len(collapsed) - len(worst)} more in the JSON (summary.<regime>.arms.<arm>.collapsed)"
            )
        ch = block["checks"]
        if "adaptive_vs_baseline" in ch:
            vb = ch["adaptive_vs_best_fixed"]
            lines += [
                "",
                f"Adaptive vs {base}: {ch['adaptive_vs_baseline']}. Best fixed split: {ch['best_fixed_split']}; "
                f"adaptive vs it: {vb['verdict']} (paired ratio {vb['ratio_mean']:.3f} ± {vb['ratio_sd']:.3f}, "
                f"wins {vb['wins']}/{vb['n']}).",
            ]
        lines.append("")
    return "\n".join(lines)


def _pair_cell(p: dict[str, float], v: str, ratio: bool = True) -> str:
    if ratio:
        body = f"x{p['ratio_mean']:.3f} (diff {p['diff_mean']:+.3g} ± {p['diff_se']:.2g})"
    else:
        body = f"{p['diff_mean']:+.3f} ± {p['diff_se']:.3f}"
    return f"{body} {'**' + v + '**' if v != 'tie' else v}"


def _reach(row: dict[str, Any]) -> str:
    n = len(row["seeds"])
    if not row["reached"]:
        return f"never (0/{n})"
    se = row["tokens_to_reach_se"]
    spread = f" ± {se:.2f}" if math.isfinite(se) else ""
    return f"{row['tokens_to_reach_mean']:.2f}{spread} ({row['reached']}/{n})"


def fair_table(rows: dict[str, Any], base: str, checks: dict[str, Any]) -> list[str]:
    """Measures (a)-(d) paired to the baseline side by side, with the token cost and tokens-to-reach."""
    lines = [
        "",
        f"Paired to {base} per seed (mean paired ratio, difference ± standard error over seeds, verdict beyond two "
        "standard errors): (a) cumulative own reward, (b) own reward over the same number of generated "
        "tokens, (c) own reward over the same node wall-seconds, (d) greedy held-out accuracy after training "
        "(difference). Tokens = own generated completion tokens relative to the baseline; to-reach = tokens "
        f"at which the arm's moving average first matched {base}'s final moving average, as a share of "
        f"{base}'s total tokens, mean ± se over the seeds that reached it; {base}'s own row shows when it "
        "first got there itself (on a plateau that is early, so compare arms with it, not with 1).",
        "",
        "| arm | (a) cumulative | (b) per token | (c) per second | (d) greedy acc | tokens | to reach |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, row in rows.items():
        if arm == base:
            lines.append(
                f"| {arm} | {row['cumulative_mean']:.1f} | baseline | baseline | "
                f"{row['eval_accuracy_mean']:.3f} | 1 | {_reach(row)} |"
            )
            continue
        p, v = row["paired_to_baseline"], checks["verdicts_by_measure"][arm]
        reach = _reach(row)
        lines.append(
            f"| {arm} | {_pair_cell(p['cumulative'], v['cumulative'])} | "
            f"{_pair_cell(p['reward_per_token'], v['reward_per_token'])} | "
            f"{_pair_cell(p['reward_per_second'], v['reward_per_second'])} | "
            f"{_pair_cell(p['eval_accuracy'], v['eval_accuracy'], ratio=False)} | "
            f"{row['tokens_ratio_mean']:.2f} | {reach} |"
        )
    return lines


def _compute_minutes(doc: dict[str, Any]) -> float:
    return sum(a["seconds"] for u in doc["units"] for a in u["arms"].values()) / 60


def _node_label(i: int) -> str:
    from swarmrl.apps.experiment import FAMILIES

    return f"n{i} [{FAMILIES[i % len(FAMILIES)]}]"


def plot(summary: dict[str, Any], path: Path, window: int) -> None:
    """One panel per regime: moving average (window ``window``) of the swarm's per-round reward, mean over
    seeds, one line per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(6.5 * len(summary), 4.5), squeeze=False)
    for ax, (regime, block) in zip(axes[0], summary.items(), strict=True):
        for arm, row in block["arms"].items():
            curve = row["ma_curve_mean"]
            style = "--" if "filtered" in arm or arm == "adaptive" else "-"
            ax.plot(range(1, len(curve) + 1), curve, style, label=arm, linewidth=1.4)
        ax.set_title(f"{regime}: own-completion reward, moving average ({window} rounds)")
        ax.set_xlabel("round")
        ax.set_ylabel("mean reward (mean over nodes and seeds)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(doc: dict[str, Any], settings: Any) -> dict[str, Any]:
    """Add the summary to ``doc`` and write sapo-results.json, sapo-table.md and sapo-reward.png."""
    out = Path(settings.out)
    summary = summarise(doc)
    doc["summary"] = summary
    (out / "sapo-results.json").write_text(json.dumps(doc, indent=1, allow_nan=True), encoding="utf-8")
    (out / "sapo-table.md").write_text(markdown(doc, summary), encoding="utf-8")
    plot(summary, out / "sapo-reward.png", settings.ma_window)
    return doc
