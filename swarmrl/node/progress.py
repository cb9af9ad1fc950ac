"""The terminal view of a run: a progress bar on a terminal (rich), plain log lines otherwise, and a short
end-of-run summary.

On a terminal (``node.progress: auto`` on a TTY, or ``rich``) the bar shows rounds done, rate and ETA when
``node.rounds`` bounds the run (a spinner, count and rate when it does not) with the last round's figures
beside it; it starts with the first round, so start-up log lines are never mixed into it, and later log
records print above it (it draws on the log handler's console). Rounds that ran an evaluation stay on screen
as lines. Otherwise (a pipe, a file, ``plain``) each round is one log line, with rate and ETA when bounded.
JSON logs never get a live display (free text would break the JSON lines).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmrl.node.logs import json_logging_active
from swarmrl.node.records import RoundRecord

log = logging.getLogger("swarmrl.progress")

#: Rounds averaged for the "first" and "last" reward of the summary.
SUMMARY_WINDOW = 20


def format_round(rec: RoundRecord, total: int) -> str:
    of = f"/{total}" if total else ""
    return " | ".join([f"round {rec.round}{of}", format_figures(rec)])


def format_figures(rec: RoundRecord) -> str:
    parts = [
        f"v{rec.policy_version}",
        f"reward {rec.reward_mean:.3f}",
        f"acc {rec.accuracy:.3f}",
        f"zero-var {rec.zero_variance_fraction:.2f}",
        f"loss {rec.loss:+.4f}",
        f"clip {rec.clip_fraction:.3f}",
        f"gen {rec.tokens_per_second:.0f} tok/s",
        f"step {rec.train_seconds:.2f}s",
    ]
    if rec.external_groups:
        parts.append(f"ext {rec.external_groups}")
    if rec.eval_accuracy is not None:
        parts.append(f"eval {rec.eval_accuracy:.3f}")
    return " | ".join(parts)


def format_short(rec: RoundRecord) -> str:
    """The figures beside the bar (kept short so the bar fits an 80-column terminal)."""
    parts = [f"reward {rec.reward_mean:.3f}", f"acc {rec.accuracy:.3f}"]
    if rec.external_groups:
        parts.append(f"ext {rec.external_groups}")
    if rec.eval_accuracy is not None:
        parts.append(f"eval {rec.eval_accuracy:.3f}")
    return " ".join(parts)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "-"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class RunSummary:
    """What the end-of-run summary needs, gathered round by round in bounded memory."""

    first_round: int = 0
    last_round: int = 0
    rounds: int = 0
    started: float = field(default_factory=time.monotonic)
    first_rewards: list[float] = field(default_factory=list)
    last_rewards: deque[float] = field(default_factory=lambda: deque(maxlen=SUMMARY_WINDOW))
    first_eval: tuple[int, float] | None = None
    last_eval: tuple[int, float] | None = None
    policy_version: int = 0

    def add(self, rec: RoundRecord) -> None:
        r = rec.round
        self.first_round = self.first_round or r
        self.last_round = r
        self.rounds += 1
        self.policy_version = rec.policy_version
        reward = rec.reward_mean
        if len(self.first_rewards) < SUMMARY_WINDOW:
            self.first_rewards.append(reward)
        self.last_rewards.append(reward)
        acc = rec.eval_accuracy
        if acc is not None and math.isfinite(float(acc)):
            self.first_eval = self.first_eval or (r, float(acc))
            self.last_eval = (r, float(acc))


def format_summary(
    s: RunSummary, data_dir: Path, checkpoint: Path | None, wall_s: float | None = None
) -> list[str]:
    """The end-of-run summary, one string per line."""
    wall = time.monotonic() - s.started if wall_s is None else wall_s
    if not s.rounds:
        lines = ["run summary: no round ran in this run"]
    else:
        rate = s.rounds / wall if wall > 0 else 0.0
        lines = [
            f"run summary: rounds {s.first_round}-{s.last_round} ({s.rounds} in this run) in "
            f"{format_duration(wall)}, {rate:.2f} rounds/s, policy version {s.policy_version}"
        ]
        n_first, n_last = len(s.first_rewards), len(s.last_rewards)
        first = sum(s.first_rewards) / n_first
        last = sum(s.last_rewards) / n_last
        lines.append(
            f"  reward {first:.3f} -> {last:.3f} (mean of the first {n_first} and the last {n_last} rounds)"
        )
        if s.first_eval is not None and s.last_eval is not None:
            (r0, a0), (r1, a1) = s.first_eval, s.last_eval
            lines.append(f"  eval accuracy {a0:.3f} -> {a1:.3f} (greedy, held-out; round {r0} -> {r1})")
        else:
            lines.append("  eval accuracy: no evaluation ran (node.eval_every)")
    lines.append(f"  checkpoint {checkpoint}" if checkpoint is not None else "  checkpoint: none written")
    lines.append(f"  export it: swarm-node export --data-dir {data_dir} --out {data_dir / 'export'}")
    return lines


def _log_console() -> Any:
    """The console of the root logger's rich handler, so that log records print above the bar."""
    from rich.console import Console
    from rich.logging import RichHandler

    for h in logging.getLogger().handlers:
        if isinstance(h, RichHandler):
            return h.console
    return Console(stderr=True)


class Progress:
    def __init__(self, mode: str, total: int, name: str) -> None:
        self.total = total
        self.name = name
        self.summary = RunSummary()
        # JSON logs own stderr: a live display would put free text between the JSON lines.
        self.rich = not json_logging_active() and (mode == "rich" or (mode == "auto" and sys.stderr.isatty()))
        self._bar: Any = None
        self._task: Any = None
        self._start_round = 0
        self._t0 = time.monotonic()

    def _start(self, rec: RoundRecord) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress
        from rich.table import Column

        bounded = self.total > 0
        columns: list[Any] = [TextColumn("[bold]{task.description}")]
        if bounded:
            columns += [BarColumn(bar_width=20), MofNCompleteColumn()]
        else:
            columns += [SpinnerColumn(), TextColumn("round {task.completed:.0f}")]
        columns += [
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
        ]
        if bounded:
            columns += [TextColumn("eta"), TimeRemainingColumn()]
        columns.append(TextColumn("{task.fields[figures]}", table_column=Column(no_wrap=True)))
        self._bar = RichProgress(*columns, console=_log_console(), refresh_per_second=4, transient=False)
        self._task = self._bar.add_task(
            self.name,
            total=self.total or None,
            completed=rec.round,
            rate="",
            figures=self._figures(rec),
        )
        self._bar.start()

    def _figures(self, rec: RoundRecord) -> str:
        """Only the figures give way on a narrow terminal (cut with an ellipsis); bar, count, rate, ETA stay."""
        text = format_short(rec)
        digits = len(str(self.total or rec.round))
        room = self._bar.console.width - len(self.name) - 2 * digits - 53
        return text if len(text) <= room else text[: max(0, room - 1)] + "…"

    def _rate(self, round_: int) -> float:
        elapsed = time.monotonic() - self._t0
        return (round_ - self._start_round) / elapsed if elapsed > 0 and round_ > self._start_round else 0.0

    def update(self, rec: RoundRecord) -> None:
        round_ = rec.round
        if not self.summary.rounds:
            # The rate counts the rounds after the first one (its duration is not known here).
            self._t0, self._start_round = time.monotonic(), round_
            if self.rich:
                self._start(rec)
        self.summary.add(rec)
        rate = self._rate(round_)
        if self._bar is not None:
            self._bar.update(
                self._task,
                completed=round_,
                rate=f"{rate:.2f} r/s" if rate else "",
                figures=self._figures(rec),
            )
            if rec.eval_accuracy is not None:
                self._bar.console.print(format_round(rec, self.total), highlight=False, soft_wrap=True)
            return
        line = format_round(rec, self.total)
        if self.total:
            eta = (self.total - round_) / rate if rate > 0 else math.inf
            line += f" | {rate:.2f} r/s | eta {format_duration(eta)}" if rate else " | - r/s | eta -"
        log.info(line)

    def finish(self, data_dir: Path, checkpoint: Path | None) -> list[str]:
        """Stop the bar and print the end-of-run summary (log records in plain and JSON modes)."""
        self.close()
        lines = format_summary(self.summary, data_dir, checkpoint)
        if self.rich:
            console = _log_console()
            for line in lines:
                console.print(line, highlight=False, markup=False, soft_wrap=True)
        else:
            for line in lines:
                log.info(line)
        return lines

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
