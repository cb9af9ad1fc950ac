"""``local-swarm`` start-up: cores divided among nodes, and a slow node waited for while it makes progress."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from swarmrl.apps.localswarm import LocalSwarm, LocalSwarmSpec, threads_per_node
from swarmrl.errors import NodeError


def test_cores_are_divided_among_nodes() -> None:
    assert threads_per_node(3, 2) == 1
    assert threads_per_node(2, 16) == 8
    assert threads_per_node(4, 18) == 4
    assert threads_per_node(1, 1) == 1


def test_node_args_set_threads_and_a_user_override_wins(tmp_path: Path) -> None:
    swarm = LocalSwarm(LocalSwarmSpec(nodes=64, data_dir=tmp_path))
    args = swarm.node_args(0, [])
    assert "node.threads=1" in args
    override = LocalSwarm(LocalSwarmSpec(nodes=2, data_dir=tmp_path, sets=("node.threads=3",)))
    args = override.node_args(1, [])
    # the user's --set comes after the default, so the config loader applies it last
    assert args.index("node.threads=3") > args.index(f"node.threads={override.threads_per_node()}")


#: Stands in for a node: logs progress for ``busy`` seconds, then goes silent (stuck) without node.json.
_SLOW_NODE = """
import sys, time
busy = float(sys.argv[1])
end = time.monotonic() + busy
while time.monotonic() < end:
    print("loading...", flush=True)
    time.sleep(0.1)
time.sleep(600)
"""


def test_a_slow_node_is_waited_for_while_it_logs_progress(tmp_path: Path) -> None:
    busy = 2.5
    spec = LocalSwarmSpec(
        nodes=1,
        data_dir=tmp_path,
        python=(sys.executable, "-c", _SLOW_NODE, str(busy)),
        start_timeout_s=1.0,
    )
    swarm = LocalSwarm(spec)
    t0 = time.monotonic()
    with pytest.raises(NodeError, match="made no start-up progress") as err:
        swarm.start()
    elapsed = time.monotonic() - t0
    # a fixed 1 s deadline would have given up while the node was still logging
    assert elapsed > busy, elapsed
    assert "loading..." in str(err.value)
    assert all(p.process.poll() is not None for p in swarm.procs)  # stopped what it started
