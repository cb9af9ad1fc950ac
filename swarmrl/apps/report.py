"""``swarm-node report``: training curves from a node's journal as one PNG, readable without Grafana.

The journal (``DATA/journal.log``, one record per round) already holds everything an operator asks first:
is the reward going up, is the node learning exact answers, how much of its training comes from the swarm
and is that material any good, which reward module moves. This module turns it into six panels:

1. total reward per round and its moving average;
2. exact-match accuracy of own completions (moving average) and the greedy held-out evaluations;
3. groups trained on per round, local vs external (stacked);
4. mean reward of the external groups (scored locally) vs the node's own groups;
5. each reward module's mean (moving averages);
6. training signal: loss, KL to the reference and clip fraction.

matplotlib is imported lazily (rendered with Agg, no display needed) so the rest of the CLI stays fast.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from swarmrl.errors import ConfigError, JournalError
from swarmrl.node.journal import read_rounds
from swarmrl.node.records import RoundRecord

JOURNAL_NAME = "journal.log"
#: Image formats the report can be written as (by the output file's suffix).
FORMATS = (".png", ".svg", ".pdf")


@dataclass
class Series:
    """The journal as columns: one entry per round, ``nan`` where a round has no value."""

    rounds: np.ndarray
    reward: np.ndarray
    accuracy: np.ndarray
    local_groups: np.ndarray
    external_groups: np.ndarray
    external_reward: np.ndarray
    own_reward: np.ndarray
    loss: np.ndarray
    kl: np.ndarray
    clip_fraction: np.ndarray
    eval_rounds: np.ndarray
    eval_accuracy: np.ndarray
    modules: dict[str, np.ndarray] = field(default_factory=dict)
    policy_version: int = 0

    def __len__(self) -> int:
        return len(self.rounds)


@dataclass
class ReportSummary:
    """What the report shows in numbers, for the command's one-line answer."""

    out: Path
    rounds: int
    first_round: int
    last_round: int
    window: int
    reward_start: float
    reward_end: float
    accuracy_end: float
    external_fraction: float
    eval_accuracy_last: float | None

    def line(self) -> str:
        text = (
            f"wrote {self.out}: rounds {self.first_round}-{self.last_round}, "
            f"reward {self.reward_start:.3f} -> {self.reward_end:.3f} "
            f"(moving average, window {self.window}), accuracy {self.accuracy_end:.3f}, "
            f"external share {self.external_fraction:.0%}"
        )
        if self.eval_accuracy_last is not None:
            text += f", last eval {self.eval_accuracy_last:.3f}"
        return text


def _num(value: Any) -> float:
    """A journal value as float; missing, ``None`` and non-numbers become ``nan``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def load_rounds(data_dir: Path) -> list[RoundRecord]:
    """The round records of ``data_dir``'s journal, in round order.

    Raises ``ConfigError`` (exit 2) when there is no journal (wrong ``--data-dir``) and ``JournalError``
    (exit 1) when the journal holds no round yet.
    """
    path = data_dir / JOURNAL_NAME
    if not data_dir.is_dir():
        raise ConfigError("--data-dir", f"'{data_dir}' is not a directory; pass the node's data directory")
    if not path.is_file():
        raise ConfigError(
            "--data-dir",
            f"no journal at '{path}': pass the data directory of a node that has run at least one round",
        )
    records = read_rounds(path)
    if not records:
        raise JournalError(
            f"the journal '{path}' holds no complete round yet: let the node finish a round, then retry"
        )
    by_round = {r.round: r for r in records}  # a resumed run rewrites rounds: keep the last
    return [by_round[k] for k in sorted(by_round)]


def to_series(records: list[RoundRecord]) -> Series:
    """Columns of the round records (see module docstring for what each panel uses)."""

    def col(key: str) -> np.ndarray:
        return np.array([_num(getattr(r, key)) for r in records], dtype=float)

    module_names = sorted({str(k) for r in records for k in r.modules})
    modules = {
        name: np.array([_num(r.modules.get(name)) for r in records], dtype=float) for name in module_names
    }
    evals = [(r.round, _num(r.eval_accuracy)) for r in records]
    evals = [(k, v) for k, v in evals if not math.isnan(v)]
    return Series(
        rounds=np.array([r.round for r in records], dtype=float),
        reward=col("reward_mean"),
        accuracy=col("accuracy"),
        local_groups=np.nan_to_num(col("local_groups")),
        external_groups=np.nan_to_num(col("external_groups")),
        external_reward=col("external_reward_mean"),
        own_reward=col("reward_mean"),
        loss=col("loss"),
        kl=col("kl"),
        clip_fraction=col("clip_fraction"),
        eval_rounds=np.array([k for k, _ in evals], dtype=float),
        eval_accuracy=np.array([v for _, v in evals], dtype=float),
        modules=modules,
        policy_version=records[-1].policy_version,
    )


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` rounds, skipping ``nan`` (a shorter window at the start).

    A point is ``nan`` only when its whole window is ``nan`` (e.g. no external group in those rounds).
    """
    if window < 1:
        raise ConfigError("--window", f"must be at least 1, got {window}")
    present = ~np.isnan(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(present, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(present)])
    hi = np.arange(1, len(values) + 1)
    lo = np.maximum(hi - window, 0)
    n = counts[hi] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[hi] - sums[lo]) / np.maximum(n, 1), np.nan)


def auto_window(rounds: int) -> int:
    """A smoothing window that shows trends without hiding them: about a tenth of the run, 1 to 25."""
    return max(1, min(25, rounds // 10))


def _last(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite[-1]) if finite.size else math.nan


def _first(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite[0]) if finite.size else math.nan


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in FORMATS:
        raise ConfigError("--out", f"'{out}' must end in one of {', '.join(FORMATS)}")
    if not out.parent.is_dir():
        raise ConfigError("--out", f"directory '{out.parent}' does not exist; create it first")


def write_report(
    data_dir: Path, out: Path, window: int | None = None, title: str | None = None
) -> ReportSummary:
    """Read ``data_dir``'s journal and write the six-panel report to ``out``; return its numbers."""
    _check_out(out)
    if window is not None and window < 1:
        raise ConfigError("--window", f"must be at least 1, got {window}")
    records = load_rounds(data_dir)
    series = to_series(records)
    win = window or auto_window(len(series))
    _plot(series, win, out, title or f"swarm-node report: {data_dir}")
    trained = series.local_groups.sum() + series.external_groups.sum()
    smooth_reward = moving_average(series.reward, win)
    return ReportSummary(
        out=out,
        rounds=len(series),
        first_round=int(series.rounds[0]),
        last_round=int(series.rounds[-1]),
        window=win,
        reward_start=_first(moving_average(series.reward[:win], win)),
        reward_end=_last(smooth_reward),
        accuracy_end=_last(moving_average(series.accuracy, win)),
        external_fraction=float(series.external_groups.sum() / trained) if trained else 0.0,
        eval_accuracy_last=_last(series.eval_accuracy) if series.eval_accuracy.size else None,
    )


def _plot(s: Series, window: int, out: Path, title: str) -> None:
    # A bare Figure renders through Agg without pyplot: no display, no GUI toolkit, no global figure state.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    x = s.rounds
    fig = Figure(figsize=(13, 11), layout="constrained")
    axes = fig.subplots(3, 2)
    fig.suptitle(
        f"{title}\nrounds {int(x[0])}-{int(x[-1])}, policy version {s.policy_version}, "
        f"moving averages over {window} round{'s' if window != 1 else ''}",
        fontsize=12,
    )
    ax = axes[0][0]
    ax.plot(x, s.reward, color="tab:blue", alpha=0.25, lw=1, label="per round")
    ax.plot(x, moving_average(s.reward, window), color="tab:blue", lw=2, label="moving average")
    ax.set_title("Total reward of own completions")
    ax.set_ylabel("mean reward")

    ax = axes[0][1]
    ax.plot(x, s.accuracy, color="tab:green", alpha=0.25, lw=1, label="own completions, per round")
    ax.plot(x, moving_average(s.accuracy, window), color="tab:green", lw=2, label="moving average")
    if s.eval_rounds.size:
        ax.plot(
            s.eval_rounds, s.eval_accuracy, "o-", color="tab:red", ms=5, lw=1, label="held-out eval (greedy)"
        )
    ax.set_title("Exact-match accuracy")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.02, 1.02)

    ax = axes[1][0]
    ax.stackplot(
        x,
        s.local_groups,
        s.external_groups,
        labels=["local", "external (from the swarm)"],
        colors=["tab:blue", "tab:orange"],
        alpha=0.7,
        step="post",
    )
    ax.set_title("Groups trained on per round")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("groups")
    if not s.external_groups.any():
        _note(ax, "no external groups: the node trained alone")

    ax = axes[1][1]
    ax.plot(x, moving_average(s.own_reward, window), color="tab:blue", lw=2, label="own groups")
    if np.isnan(s.external_reward).all():
        _note(ax, "no external groups yet")
    else:
        ax.plot(x, s.external_reward, ".", color="tab:orange", alpha=0.3, ms=3)
        ax.plot(
            x,
            moving_average(s.external_reward, window),
            color="tab:orange",
            lw=2,
            label="external groups (scored locally)",
        )
    ax.set_title("Reward: own vs external groups")
    ax.set_ylabel("mean reward (moving average)")

    ax = axes[2][0]
    for name, values in s.modules.items():
        ax.plot(x, moving_average(values, window), lw=2, label=name)
    if not s.modules:
        _note(ax, "the journal has no per-module rewards")
    ax.set_title("Reward per module (moving averages)")
    ax.set_ylabel("mean module reward")

    ax = axes[2][1]
    ax.plot(x, moving_average(s.loss, window), color="tab:purple", lw=2, label="loss")
    ax.plot(x, moving_average(s.kl, window), color="tab:brown", lw=2, label="KL to reference")
    ax.set_ylabel("loss, KL")
    twin = ax.twinx()
    twin.plot(x, moving_average(s.clip_fraction, window), color="tab:gray", lw=1.5, ls="--", label="clip")
    twin.set_ylabel("clip fraction")
    ax.set_title("Training signal (moving averages)")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = twin.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, loc="best", fontsize=9)

    for row in axes:
        for a in row:
            a.set_xlabel("round")
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
            a.grid(True, alpha=0.3)
            if a is not axes[2][1] and a.get_legend_handles_labels()[0]:
                a.legend(loc="best", fontsize=9)
    # Write next to the target, then rename: a dashboard or cron job never reads a half-written image.
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        fig.savefig(tmp, dpi=100, format=out.suffix.lower().lstrip("."))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _note(ax: Any, text: str) -> None:
    """A grey remark near the top of a panel, on a white box so it stays readable over the data."""
    ax.text(
        0.5,
        0.93,
        text,
        transform=ax.transAxes,
        ha="center",
        va="top",
        color="dimgray",
        fontsize=10,
        bbox={"facecolor": "white", "edgecolor": "lightgray", "alpha": 0.9},
    )
