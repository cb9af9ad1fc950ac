"""Six real training nodes over emulated WAN links: 50-200 ms one-way delays with jitter, 1 Mbit/s uplinks for
two of them, then a split into two halves and a heal (see ``topology`` for how the links are emulated).

Asserted on the nodes' own counters (control service per-peer accepted groups, /metrics, rounds), never on
sleeps: every node keeps training in every phase; each half keeps exchanging groups while split, and nothing
crosses the split; after the heal groups cross again; no receiver accepted more groups from a sender than
that sender published (no group accepted twice); no ERROR or traceback in any node's log.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from swarmrl.node.control import ControlClient
from swarmrl.swarm.identity import Identity
from tests.integration.swarm_procs import SWARM_NODE, Proc
from tests.netns.topology import Wan, netns_available
from tests.nodeutil import FAST, REPO, deep_merge, metric_value, node_env, scrape, wait_for

pytestmark = pytest.mark.netns

NODES = 6
LEFT, RIGHT = [0, 1, 2], [3, 4, 5]
SLOW = (1, 4)  # 1 Mbit/s uplinks, one in each half
P2P_PORT, CONTROL_PORT, METRICS_PORT = 4001, 7001, 9401


def one_way_ms(src: int, dst: int) -> float:
    """A fixed spread of one-way delays between 50 and 200 ms (asymmetric: src->dst differs from dst->src)."""
    return 50.0 + ((src * 7 + dst * 13) % 16) * 10.0


@pytest.fixture
def wan(tmp_path: Path) -> Iterator[Wan]:
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)
    delays = {(s, d): one_way_ms(s, d) for s in range(NODES) for d in range(NODES) if s != d}
    net = Wan(NODES, delays, default_ms=100.0)
    try:
        net.up(tmp_path)
        yield net
    finally:
        net.close()


class WanNode:
    def __init__(self, proc: Proc, control: str, metrics: str) -> None:
        self.proc = proc
        self.control = ControlClient(control, timeout_s=10.0)
        self.metrics_url = f"http://{metrics}/metrics"

    def accepted(self) -> dict[str, int]:
        return {p.peer_id: int(p.accepted_groups) for p in self.control.peers().peers}

    def round(self) -> int:
        return int(self.control.status().round)

    def published(self) -> float:
        return metric_value(scrape(self.metrics_url), "swarmrl_rollouts_published_total") or 0.0


def launch(
    net: Wan, root: Path, swarm: list[dict[str, Any]], only: list[int] | None = None
) -> list[subprocess.Popen[bytes]]:
    """Start node i (each i in ``only``, default all) in its namespace with ``swarm[i]`` merged into its swarm
    section (libp2p on P2P_PORT); the processes in that order."""
    procs = []
    for i in range(len(swarm)) if only is None else only:
        extra = swarm[i]
        data = root / f"n{i}"
        data.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = deep_merge(FAST, SWARM_NODE)
        node = {"name": f"n{i}", "seed": i, "data_dir": str(data), "control_port": CONTROL_PORT}
        node["metrics_port"] = METRICS_PORT
        cfg = deep_merge(
            cfg, {"node": node, "swarm": {"transport": "libp2p", "listen_port": P2P_PORT, **extra}}
        )
        path = root / f"n{i}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        log = (data / "node.log").open("ab")
        argv = net.command(i, [sys.executable, "-m", "swarmrl.cli", "run", "--config", str(path)])
        procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=node_env(), cwd=REPO))
    return procs


def _start(net: Wan, root: Path, ids: list[Identity]) -> list[subprocess.Popen[bytes]]:
    boot = [f"/ip4/{net.addr(i)}/tcp/{P2P_PORT}/p2p/{ids[i].peer_id_text}" for i in (0, 3)]
    swarm = [
        {
            "listen_host": net.addr(i),
            "bootstrap_peers": [b for j, b in zip((0, 3), boot, strict=True) if j != i],
        }
        for i in range(NODES)
    ]
    return launch(net, root, swarm)


@contextlib.contextmanager
def stopping(procs: list[subprocess.Popen[bytes]]) -> Iterator[None]:
    try:
        yield
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def test_six_nodes_over_wan_links_through_a_split_and_heal(wan: Wan, tmp_path: Path) -> None:
    ids = []
    for i in range(NODES):
        ident = Identity.generate()
        ident.save(tmp_path / f"n{i}" / "identity.key")
        ids.append(ident)
    for i in SLOW:
        wan.uplink(i, "1mbit")
    procs = _start(wan, tmp_path, ids)
    with stopping(procs):
        nodes = []
        for i, process in enumerate(procs):
            data = tmp_path / f"n{i}"
            proc = Proc(f"n{i}", data, data / "node.log", tmp_path / f"n{i}.yaml", process)
            proc.wait_up()
            nodes.append(WanNode(proc, wan.forward(i, CONTROL_PORT), wan.forward(i, METRICS_PORT)))
        pid = [ident.peer_id_text for ident in ids]

        def got(acc: list[dict[str, int]], r: int, s: int) -> int:
            return acc[r].get(pid[s], 0)

        def snapshot() -> list[dict[str, int]]:
            return [n.accepted() for n in nodes]

        def rounds() -> list[int]:
            return [n.round() for n in nodes]

        # 1. joined: every node accepts groups from every other one, slow uplinks and long delays included
        wait_for(
            lambda: all(got(acc, r, s) > 0 for acc in [snapshot()] for r in range(NODES) for s in range(NODES) if r != s),
            240, "every node to accept groups from all five others", interval=1.0,
        )  # fmt: skip

        # 2. split: each half keeps training and exchanging; nothing crosses
        wan.split(LEFT, RIGHT)
        half = {i: (LEFT if i in LEFT else RIGHT) for i in range(NODES)}
        start, r0 = snapshot(), rounds()

        def within_half_grew(base: list[dict[str, int]]) -> bool:
            acc = snapshot()
            return all(any(got(acc, r, s) > got(base, r, s) for s in half[r] if s != r) for r in range(NODES))

        wait_for(lambda: within_half_grew(start), 180, "each half to exchange groups while split", 1.0)
        frozen = snapshot()
        wait_for(lambda: within_half_grew(frozen), 180, "each half to keep exchanging while split", 1.0)
        during = snapshot()
        for r in range(NODES):
            for s in range(NODES):
                if s not in half[r]:
                    assert got(during, r, s) == got(frozen, r, s), f"n{r} accepted from n{s} across the split"
        r1 = rounds()
        assert all(b > a for a, b in zip(r0, r1, strict=True)), (r0, r1)

        # 3. heal: groups cross again
        wan.heal()

        def crossed() -> bool:
            acc = snapshot()
            return all(
                any(got(acc, r, s) > got(during, r, s) for s in range(NODES) if s not in half[r])
                for r in range(NODES)
            )

        wait_for(crossed, 240, "groups to cross between the halves after the heal", 1.0)
        final = snapshot()
        r2 = rounds()
        assert all(b > a for a, b in zip(r1, r2, strict=True)), (r1, r2)

        # 4. no group accepted twice: nobody accepted more from a sender than it published
        published = [n.published() for n in nodes]
        for r in range(NODES):
            for s in range(NODES):
                if r != s:
                    assert got(final, r, s) <= published[s], (r, s, got(final, r, s), published[s])
        bad = {n.proc.name: n.proc.bad_log_lines()[:5] for n in nodes if n.proc.bad_log_lines()}
        assert not bad, bad
