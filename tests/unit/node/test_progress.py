"""The terminal view: plain round lines with rate and ETA, the rich bar, and the end-of-run summary."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
from rich.console import Console
from rich.logging import RichHandler

from swarmrl.node.progress import Progress, RunSummary, format_duration, format_summary
from swarmrl.node.records import RoundRecord


def _rec(r: int, reward: float, eval_acc: float | None = None) -> RoundRecord:
    return RoundRecord.from_dict(
        {
            "round": r,
            "policy_version": 2 * r,
            "reward_mean": reward,
            "accuracy": reward,
            "zero_variance_fraction": 0.25,
            "loss": 0.01,
            "clip_fraction": 0.0,
            "tokens_per_second": 1000.0,
            "train_seconds": 0.01,
            "external_groups": 0,
            "eval_accuracy": eval_acc,
        }
    )


def test_summary_text() -> None:
    s = RunSummary()
    for r in range(1, 31):
        s.add(_rec(r, 0.1 if r <= 20 else 0.4, 0.25 if r == 10 else (0.5 if r == 30 else None)))
    lines = format_summary(s, Path("/d"), Path("/d/checkpoints/ckpt-00000030"), wall_s=15.0)
    assert lines == [
        "run summary: rounds 1-30 (30 in this run) in 0:15, 2.00 rounds/s, policy version 60",
        # first 20 rounds: 0.1; last 20 rounds: 10 x 0.1 + 10 x 0.4
        "  reward 0.100 -> 0.250 (mean of the first 20 and the last 20 rounds)",
        "  eval accuracy 0.250 -> 0.500 (greedy, held-out; round 10 -> 30)",
        "  checkpoint /d/checkpoints/ckpt-00000030",
        "  export it: swarm-node export --data-dir /d --out /d/export",
    ]


def test_summary_of_a_run_without_rounds_or_eval() -> None:
    lines = format_summary(RunSummary(), Path("/d"), None, wall_s=1.0)
    assert lines[0] == "run summary: no round ran in this run" and "checkpoint: none written" in lines[1]
    s = RunSummary()
    s.add(_rec(101, 0.5))  # a resumed run: its first round is 101
    lines = format_summary(s, Path("/d"), None, wall_s=2.0)
    assert lines[0].startswith("run summary: rounds 101-101 (1 in this run)")
    assert lines[2] == "  eval accuracy: no evaluation ran (node.eval_every)"


def test_durations() -> None:
    assert [format_duration(x) for x in (0, 59.4, 61, 3725, float("inf"))] == [
        "0:00",
        "0:59",
        "1:01",
        "1:02:05",
        "-",
    ]


def test_plain_lines_carry_rate_and_eta_when_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swarmrl.progress")
    bounded = Progress("plain", 10, "n")
    assert not bounded.rich
    for r in (1, 2, 3):
        bounded.update(_rec(r, 0.5))
    unbounded = Progress("plain", 0, "n")
    unbounded.update(_rec(1, 0.5))
    lines = [rec.getMessage() for rec in caplog.records]
    assert lines[0].startswith("round 1/10 | v2 | reward 0.500")
    assert lines[0].endswith(" | - r/s | eta -")
    assert all(" r/s | eta 0:" in line for line in lines[1:3])
    assert lines[3].startswith("round 1 | ") and "eta" not in lines[3]
    bounded.finish(Path("/d"), None)
    assert caplog.records[-1].getMessage().startswith("  export it: swarm-node export --data-dir /d")


def test_rich_bar_draws_on_the_log_console_with_count_rate_and_eta() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200, color_system=None)
    root = logging.getLogger()
    handler = RichHandler(console=console, show_path=False)
    root.addHandler(handler)
    try:
        p = Progress("rich", 3, "node-a")
        assert p.rich and p._bar is None  # nothing is drawn before the first round
        for r in (1, 2, 3):
            p.update(_rec(r, 0.5, 0.75 if r == 3 else None))
            logging.getLogger("swarmrl.test").warning("a log line while the bar is up")
        p.finish(Path("/d"), Path("/d/checkpoints/ckpt-00000003"))
    finally:
        root.removeHandler(handler)
    out = buf.getvalue()
    assert "node-a" in out and "3/3" in out and "r/s" in out and "eta" in out
    assert "round 3/3 | v6" in out  # an evaluated round stays on screen as a line
    assert "a log line while the bar is up" in out
    assert "run summary: rounds 1-3 (3 in this run)" in out and "export it: swarm-node export" in out
    assert "progress.py" not in out and "starting" not in out
