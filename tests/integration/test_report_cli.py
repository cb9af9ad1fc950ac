"""``swarm-node report``: a real short node run, then the report command in a subprocess.

Also the error paths (no journal: exit 2; a journal without rounds: exit 1) and the smoothing and journal
reading on hand-written journals, including external groups a solo node cannot produce.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from swarmrl.apps.report import load_rounds, moving_average, to_series, write_report
from swarmrl.errors import ConfigError, JournalError
from swarmrl.node.journal import Journal
from tests.nodeutil import run_cli, write_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROUNDS = 5


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (fails on anything that is not a PNG)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG: {head[:8]!r}"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


@pytest.fixture(scope="module")
def node_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The data directory of a real node that ran ROUNDS rounds (tiny model, evaluations every 2 rounds)."""
    work = tmp_path_factory.mktemp("report-node")
    config = write_config(
        work / "node.yaml", work / "data", {"node": {"rounds": ROUNDS, "eval_every": 2, "metrics_port": -1}}
    )
    done = run_cli("run", "--config", str(config))
    assert done.returncode == 0, done.stderr[-3000:]
    return work / "data"


def test_report_of_a_real_run_is_a_png(node_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.png"
    done = run_cli("report", "--data-dir", str(node_data), "--out", str(out), "--window", "2")
    assert done.returncode == 0, done.stderr
    assert f"rounds 1-{ROUNDS}" in done.stdout and "window 2" in done.stdout, done.stdout
    assert "last eval" in done.stdout  # eval_every 2: the held-out points are in the journal
    assert png_size(out) == (1300, 1100)
    assert 30_000 < out.stat().st_size < 2_000_000  # six drawn panels, not a blank canvas
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file was left behind"


def test_report_numbers_match_the_journal(node_data: Path, tmp_path: Path) -> None:
    records = load_rounds(node_data)
    assert [r.round for r in records] == list(range(1, ROUNDS + 1))
    summary = write_report(node_data, tmp_path / "r.svg", window=ROUNDS)
    assert (tmp_path / "r.svg").read_text().lstrip().startswith("<?xml")
    rewards = [r.reward_mean for r in records]
    assert summary.reward_end == pytest.approx(sum(rewards) / len(rewards))
    assert summary.external_fraction == 0.0  # a node without a swarm trains on its own groups only
    evals = [r.eval_accuracy for r in records if r.eval_accuracy is not None]
    assert summary.eval_accuracy_last == pytest.approx(evals[-1])


def test_missing_journal_is_a_usage_error(tmp_path: Path) -> None:
    done = run_cli("report", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r.png"))
    assert done.returncode == 2
    assert "no journal" in done.stderr and "--data-dir" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r.png").exists()


def test_journal_without_rounds_is_a_runtime_error(tmp_path: Path) -> None:
    (tmp_path / "journal.log").write_bytes(b"")
    done = run_cli("report", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r.png"))
    assert done.returncode == 1
    assert "holds no complete round" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_bad_output_and_window_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--out"):
        write_report(tmp_path, tmp_path / "r.txt")
    with pytest.raises(ConfigError, match="--out"):
        write_report(tmp_path, tmp_path / "missing-dir" / "r.png")
    with pytest.raises(ConfigError, match="--window"):
        write_report(tmp_path, tmp_path / "r.png", window=0)


def _record(round_: int, reward: float, external: int, ext_reward: float | None) -> dict[str, Any]:
    return {
        "kind": "round",
        "round": round_,
        "policy_version": 2 * round_,
        "reward_mean": reward,
        "accuracy": reward,
        "modules": {"exact_match": reward, "format": 0.5},
        "local_groups": 4,
        "external_groups": external,
        "external_reward_mean": ext_reward,
        "loss": 0.01,
        "kl": 0.0,
        "clip_fraction": 0.0,
        "eval_accuracy": 0.5 if round_ % 3 == 0 else None,
    }


def test_swarm_journal_with_external_groups_and_a_resume(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.log")
    for k in range(1, 7):
        journal.append(_record(k, 0.1 * k, 0 if k < 3 else 4, None if k < 3 else 0.8))
    journal.append(_record(6, 0.9, 4, 0.7))  # round 6 again after a resume: the later record wins
    journal.close()
    series = to_series(load_rounds(tmp_path))
    assert list(series.rounds) == [1, 2, 3, 4, 5, 6]
    assert series.reward[-1] == pytest.approx(0.9)
    assert math.isnan(series.external_reward[0]) and series.external_reward[-1] == pytest.approx(0.7)
    assert sorted(series.modules) == ["exact_match", "format"]
    assert list(series.eval_rounds) == [3, 6]
    summary = write_report(tmp_path, tmp_path / "swarm.png", window=2)
    assert summary.external_fraction == pytest.approx(16 / (16 + 24))
    assert png_size(tmp_path / "swarm.png") == (1300, 1100)


def test_moving_average_skips_missing_rounds() -> None:
    values = np.array([1.0, 3.0, np.nan, 5.0, np.nan, np.nan])
    got = moving_average(values, 2)
    assert got[:4].tolist() == [1.0, 2.0, 3.0, 5.0]
    assert got[4] == 5.0 and math.isnan(got[5])  # a window with no value stays empty
    with pytest.raises(ConfigError):
        moving_average(values, 0)


def test_report_of_a_journal_with_only_other_records_fails(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.log")
    journal.append({"kind": "note", "text": "not a round"})
    journal.close()
    with pytest.raises(JournalError, match="no complete round"):
        load_rounds(tmp_path)
