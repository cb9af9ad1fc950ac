"""A real swarm on loopback: ``swarm-node local-swarm`` with 3 node processes (libp2p and gRPC), the
control API and CLI against them, and a node killed with SIGKILL that later rejoins from its peer cache.

Every wait is on a condition (control API, metrics, files) with a timeout; no fixed sleeps.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from swarmrl.node.runinfo import read_run_info, run_info_path
from tests.integration.swarm_procs import (
    SWARM_NODE,
    Proc,
    cluster,
    delivery_seconds,
    libp2p_addr,
    pid_gone,
)
from tests.nodeutil import FAST, REPO, deep_merge, metric_value, node_env, run_cli, wait_for

LINE = re.compile(r"^node (\d+) metrics (http://127\.0\.0\.1:\d+/metrics)$")


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["libp2p", "grpc"])
def test_local_swarm_every_node_trains_on_both_others(tmp_path: Path, transport: str) -> None:
    config = tmp_path / "swarm.yaml"
    config.write_text(yaml.safe_dump(deep_merge(FAST, SWARM_NODE)))
    data = tmp_path / "swarm"
    out = (tmp_path / "launcher.out").open("w+")
    err_path = tmp_path / "launcher.err"
    args = ["local-swarm", "--nodes", "3", "--data-dir", str(data), "--transport", transport]
    launcher = subprocess.Popen(
        [sys.executable, "-m", "swarmrl.cli", *args, "--config", str(config), "--rounds", "0"],
        stdout=out,
        stderr=err_path.open("w"),
        env=node_env(),
        cwd=REPO,
    )
    try:

        def printed() -> list[re.Match[str]] | None:
            assert launcher.poll() is None, err_path.read_text()
            out.seek(0)
            lines = [line for line in out.read().splitlines() if line.strip()]
            return [m for m in map(LINE.match, lines) if m] if len(lines) >= 3 else None

        matches = wait_for(printed, 240, "three 'node <i> metrics <url>' lines", interval=0.2)
        assert [int(m.group(1)) for m in matches] == [0, 1, 2]
        infos = [read_run_info(data / f"node-{i}") for i in range(3)]
        assert [m.group(2) for m in matches] == [i.metrics_url for i in infos]
        procs = [
            Proc(f"node-{i}", data / f"node-{i}", data / f"node-{i}" / "node.log", config, launcher, infos[i])
            for i in range(3)
        ]
        assert len({p.peer_id for p in procs}) == 3 and all(
            p.info and p.info.transport == transport for p in procs
        )

        def every_node_has_both_others() -> bool:
            return all(p.accepted_from(q) > 0 for p in procs for q in procs if p is not q)

        wait_for(every_node_has_both_others, 120, "every node to accept groups from both others", 0.5)

        def trained_external() -> bool:
            return all(p.metric("swarmrl_train_groups_total", '{origin="external"}') > 0 for p in procs)

        wait_for(trained_external, 60, "every node to train on external groups", 0.5)
        for p in procs:
            text = p.metrics()
            assert (metric_value(text, "swarmrl_rollouts_received_total") or 0) > 0
            count, mean = delivery_seconds(text)
            print(f"{transport} {p.name}: {count:.0f} deliveries, mean delivery {mean * 1000:.1f} ms")
            assert p.bad_log_lines() == [], p.bad_log_lines()

        status = run_cli("status", "--data-dir", str(data / "node-1"), timeout=60)
        assert status.returncode == 0, status.stderr
        assert procs[1].peer_id in status.stdout and transport in status.stdout
        peers = run_cli("peers", "--control", procs[0].info.control if procs[0].info else "", timeout=60)
        assert peers.returncode == 0, peers.stderr
        assert "known peers" in peers.stdout and "accepted" in peers.stdout

        launcher.send_signal(signal.SIGINT)  # Ctrl-C: every node gets SIGTERM, finishes, checkpoints
        assert launcher.wait(timeout=90) == 0, err_path.read_text()
        assert all(pid_gone(i.pid) for i in infos)
        assert not any(run_info_path(data / f"node-{i}").exists() for i in range(3)), "clean stop"
        assert all(list((data / f"node-{i}" / "checkpoints").iterdir()) for i in range(3))
    finally:
        if launcher.poll() is None:
            launcher.send_signal(signal.SIGTERM)
            try:
                launcher.wait(timeout=90)
            except subprocess.TimeoutExpired:
                launcher.kill()
        out.close()


@pytest.mark.slow
def test_kill9_leaves_two_training_and_restart_rejoins_from_peer_cache(tmp_path: Path) -> None:
    with cluster(tmp_path) as c:
        a = c.start("a", {"swarm": {"transport": "libp2p"}})
        a.wait_up()
        b = c.start("b", {"swarm": {"transport": "libp2p", "bootstrap_peers": [libp2p_addr(a)]}})
        b.wait_up()
        c_extra = {"swarm": {"transport": "libp2p", "bootstrap_peers": [libp2p_addr(a), libp2p_addr(b)]}}
        n3 = c.start("c", c_extra)
        n3.wait_up()
        procs = [a, b, n3]
        wait_for(
            lambda: all(p.accepted_from(q) > 0 for p in procs for q in procs if p is not q),
            120,
            "all three exchanging",
            0.5,
        )
        cache = n3.data_dir / "swarm" / "peers.json"
        wait_for(lambda: cache.exists() and b.peer_id in cache.read_text(), 30, "c's peer cache to hold b")

        n3.kill9()
        rounds = {p.name: p.round() for p in (a, b)}
        a_from_b, b_from_a = a.accepted_from(b), b.accepted_from(a)
        wait_for(
            lambda: (
                all(p.round() >= rounds[p.name] + 5 for p in (a, b))
                and a.accepted_from(b) > a_from_b
                and b.accepted_from(a) > b_from_a
            ),
            90,
            "a and b to keep training and exchanging without c",
            0.5,
        )
        wait_for(lambda: a.metric("swarmrl_peers_connected") == 1, 30, "a to notice the loss of c")
        for p in (a, b):
            assert p.process.poll() is None
            assert p.bad_log_lines() == [], p.bad_log_lines()

        # Stop the bootstrap node; restart c with only the (dead) bootstrap node configured.
        assert a.terminate() == 0
        b_from_c = b.accepted_from(n3)
        c_round = max(int(str(r["round"])) for r in _journal(n3))
        restarted = c.start(
            "c", {"swarm": {"transport": "libp2p", "bootstrap_peers": [libp2p_addr(a)]}}, seed=2
        )
        restarted.wait_up()
        wait_for(
            lambda: restarted.accepted_from(b) > 0 and b.accepted_from(restarted) > b_from_c,
            120,
            "restarted c to rejoin b through its peer cache",
            0.5,
        )
        assert restarted.round() >= c_round, "resumed from its checkpoint"
        assert restarted.bad_log_lines() == [] and b.bad_log_lines() == []
        print(f"kill9: b trained to round {b.round()}, c resumed at round >= {c_round}")


def _journal(proc: Proc) -> list[dict[str, object]]:
    from swarmrl.node.journal import read_journal

    return [r for r in read_journal(proc.data_dir / "journal.log") if r.get("kind") == "round"]


def test_status_without_a_running_node_says_how_to_start_one(tmp_path: Path) -> None:
    result = run_cli("status", "--data-dir", str(tmp_path), timeout=60)
    assert result.returncode == 1
    assert "swarm-node run --data-dir" in result.stderr
    bad = run_cli("peers", "--control", "nonsense", timeout=60)
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
