"""Smoke test of ``benchmarks/gossip.py`` (our two transports, quick mode) and of the gossip-only node.

Real node processes on loopback: libp2p transport, signed envelopes, the full receive path. The hivemind
side is not run here (it needs hivemind and minutes); the full benchmark is run by hand or ``make``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.nodeutil import REPO

BENCH = REPO / "benchmarks" / "gossip.py"

PHASE_KEYS = {
    "system",
    "nodes",
    "payload_bytes",
    "rounds",
    "rounds_failed",
    "round_ms_median",
    "round_ms_p90",
    "sustained_batches_per_s",
    "burst_ok",
    "burst_batches_per_s",
    "cpu_s_per_node_mean",
    "peak_mem_mb_per_node_mean",
    "worker_torch_loaded",
    "processes_per_node",
}


def test_quick_benchmark_of_our_side_writes_the_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "gossip.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--systems",
            "ours,ours-grpc",
            "--payloads",
            "1024,65536",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["hivemind"] == [] and result["ratios"] == []
    phases = result["ours"]
    assert [(p["nodes"], p["payload_bytes"]) for p in phases] == [(2, 1024), (2, 65536)]
    for phase in phases:
        assert set(phase) >= PHASE_KEYS
        assert phase["system"] == "ours"
        assert phase["rounds_failed"] == 0 and phase["burst_ok"] is True
        assert 0 < phase["round_ms_median"] <= phase["round_ms_p90"] < 30_000
        assert phase["sustained_batches_per_s"] > 0 and phase["burst_batches_per_s"] > 0
        assert phase["cpu_s_per_node_mean"] > 0
        assert 10 < phase["peak_mem_mb_per_node_mean"] < 1000
        # the gossip-only worker never imported torch, and it is one process per node (no helpers)
        assert phase["worker_torch_loaded"] is False
        assert len(phase["processes_per_node"]) == 1
    grpc = result["ours-grpc"]
    assert [(p["nodes"], p["rounds_failed"], p["burst_ok"]) for p in grpc] == [(2, 0, True), (2, 0, True)]
    assert "| ours | 2 | 64 KiB |" in result["markdown"]
    assert "| ours | 2 | 1 KiB |" in proc.stdout


def test_gossip_node_answers_its_control_protocol_without_torch(tmp_path: Path) -> None:
    commands = [
        {"cmd": "info"},
        {"cmd": "bogus"},
        {"cmd": "publish", "tag": 1, "batches": 2, "envelope_bytes": 4096, "expect": 0},
        {"cmd": "quit"},
    ]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarmrl.apps.gossip_node",
            "--control",
            "stdio",
            "--data-dir",
            str(tmp_path / "node"),
            "--set",
            "swarm.peer_cache_file=''",
            "--set",
            "swarm.max_publish_per_second=100",
        ],
        cwd=REPO,
        input="".join(json.dumps(c) + "\n" for c in commands),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    by_kind = {e["event"]: e for e in events}
    assert events[0]["event"] == "ready"
    assert by_kind["ready"]["torch_loaded"] is False
    assert by_kind["ready"]["addrs"][0].startswith("/ip4/127.0.0.1/tcp/")
    assert "unknown command" in by_kind["error"]["message"]
    assert by_kind["have"]["ok"] is True and by_kind["have"]["tag"] == 1
    bye = by_kind["bye"]
    assert events[-1]["event"] == "bye"
    assert bye["published_groups"] == 2 and bye["torch_loaded"] is False
    assert 1 <= bye["transport"]["published"] <= 2  # the second may still sit in the paced outbox
    assert (tmp_path / "node" / "identity.key").exists()


def test_gossip_node_refuses_a_transport_that_cannot_reach_peers(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "swarmrl.apps.gossip_node",
            "--data-dir",
            str(tmp_path),
            "--set",
            "swarm.transport=memory",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "swarm.transport" in proc.stderr


def test_swarm_and_protocol_packages_never_import_torch() -> None:
    code = (
        "import sys\n"
        "import swarmrl.protocol.envelope, swarmrl.swarm, swarmrl.apps.gossip_node\n"
        "import swarmrl.swarm.transports.libp2p.transport, swarmrl.swarm.transports.grpc\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"
