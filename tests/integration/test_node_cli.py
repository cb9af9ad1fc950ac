"""The real CLI in subprocesses: run a few rounds, resume, survive kill -9, serve metrics, stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path

import psutil
import pytest

from swarmrl.node.journal import read_journal, scan
from swarmrl.trainer.checkpoint import list_checkpoints, load_latest
from tests.nodeutil import (
    metric_value,
    metrics_url,
    run_cli,
    scrape,
    start_node,
    wait_for,
    write_config,
)


def _rounds(data: Path) -> list[int]:
    return [r["round"] for r in read_journal(data / "journal.log")]


def test_run_then_resume_continues_without_repeating(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cfg = write_config(tmp_path / "node.yaml", data, {"node": {"metrics_port": -1}})
    first = run_cli("run", "--config", str(cfg), "--rounds", "3", timeout=300)
    assert first.returncode == 0, first.stderr
    assert "round 3/3" in first.stderr
    assert _rounds(data) == [1, 2, 3]
    ck = load_latest(data / "checkpoints")
    assert ck is not None and ck.round == 3
    version = ck.policy_version
    assert read_journal(data / "journal.log")[-1]["policy_version"] == version

    second = run_cli("run", "--config", str(cfg), "--rounds", "5", timeout=300)
    assert second.returncode == 0, second.stderr
    assert f"resumed from ckpt-00000003: round 3, policy version {version}" in second.stderr
    assert "round 4/5" in second.stderr and "round 1/5" not in second.stderr
    records = read_journal(data / "journal.log")
    assert [r["round"] for r in records] == [1, 2, 3, 4, 5]
    versions = [r["policy_version"] for r in records]
    assert versions == sorted(versions) and versions[3] >= version


@pytest.mark.parametrize("staleness", [0, 1], ids=["synchronous", "overlapped"])
def test_metrics_then_kill9_then_resume(tmp_path: Path, staleness: int) -> None:
    """Also with the overlapped default: its generation child (and checkpoint writer) goes with the node."""
    data = tmp_path / "data"
    cfg = write_config(
        tmp_path / "node.yaml", data, {"node": {"rounds": 0}, "trainer": {"max_staleness": staleness}}
    )
    log = tmp_path / "node.log"
    proc = start_node(["run", "--config", str(cfg)], log)
    children: list[psutil.Process] = []
    try:
        url = metrics_url(log)

        def at_round_3() -> str | None:
            text = scrape(url)
            return text if (metric_value(text, "swarmrl_round") or 0) >= 3 else None

        text = wait_for(at_round_3, 180, "round 3 on /metrics")
        for name, labels in [
            ("swarmrl_round", ""),
            ("swarmrl_policy_version", ""),
            ("swarmrl_reward_mean", '{module="total"}'),
            ("swarmrl_reward_mean", '{module="exact_match"}'),
            ("swarmrl_accuracy", ""),
            ("swarmrl_train_step_seconds_count", ""),
            ("swarmrl_generation_tokens_total", ""),
            ("swarmrl_checkpoint_timestamp_seconds", ""),
            ("swarmrl_train_groups_total", '{origin="local"}'),
        ]:
            assert metric_value(text, name, labels) is not None, f"{name}{labels} missing"
        assert (metric_value(text, "swarmrl_generation_tokens_total") or 0) > 0
        with urllib.request.urlopen(url.replace("/metrics", "/healthz"), timeout=5) as resp:
            assert resp.status == 200

        wait_for(lambda: len(list_checkpoints(data / "checkpoints")) >= 2, 120, "two checkpoints")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert bool(children) == bool(staleness), children  # the generation process, only when overlapped
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        wait_for(
            lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
            30,
            "the generation process to exit with its node",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    ck = load_latest(data / "checkpoints")
    assert ck is not None
    before = _rounds(data)
    assert before[: ck.round] == list(range(1, ck.round + 1))

    target = ck.round + 2
    res = run_cli("run", "--config", str(cfg), "--rounds", str(target), "--metrics-port", "-1", timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"resumed from {ck.path.name}: round {ck.round}, policy version {ck.policy_version}" in res.stderr
    scanned = scan(data / "journal.log")
    assert not scanned.torn
    rounds = [r["round"] for r in scanned.records]
    assert rounds == list(range(1, target + 1)), rounds
    assert scanned.records[ck.round]["policy_version"] >= ck.policy_version


@pytest.mark.parametrize(
    ("staleness", "group"), [(0, False), (1, True)], ids=["synchronous", "overlapped-ctrl-c"]
)
def test_sigterm_stops_cleanly_with_checkpoint(tmp_path: Path, staleness: int, group: bool) -> None:
    """SIGTERM to the node; overlapped: SIGINT to its whole process group, as Ctrl-C in a terminal or
    systemd's stop does, which reaches the generation child too: it must ignore it and let the node stop."""
    data = tmp_path / "data"
    cfg = write_config(
        tmp_path / "node.yaml",
        data,
        {"node": {"rounds": 0, "checkpoint_every": 1000}, "trainer": {"max_staleness": staleness}},
    )
    log = tmp_path / "node.log"
    proc = start_node(["run", "--config", str(cfg)], log, new_session=group)
    try:
        wait_for(lambda: len(_rounds(data)) >= 2, 180, "two rounds")
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    last = _rounds(data)[-1]
    ck = load_latest(data / "checkpoints")
    assert ck is not None and ck.round == last  # the graceful stop wrote a checkpoint at the last round
    text = log.read_text()
    assert "stop requested" in text
    assert "Traceback" not in text and "restarting" not in text, text
