"""Two nodes behind emulated NAT routers reach each other through a circuit relay, then hole-punch a direct
connection (py-libp2p 0.8.1's circuit relay v2 and DCUtR).

Namespaces (``topology``, plain routing: no delay proxy, so the NAT routers see the nodes' own TCP packets):
node 0 is the relay (``swarm.relay: true``, public address); nodes 1 and 2 each sit behind their own router
doing iptables MASQUERADE and dropping unsolicited inbound TCP (a home router): they can dial out, nothing
can dial in. Both bootstrap to the relay with ``swarm.relay_reserve: true``: each reserves a slot there and
advertises its ``/p2p-circuit`` address.

The NATed nodes start first and come up alone (their dials to the relay fail), then the relay starts: a
relay that comes up late is joined within seconds. Asserted, in order: the NATed nodes cannot be dialled
(neither the private address nor the router's public one) but can dial out; both reserve a slot; one dials
the other through the relay; the two accept each other's groups; DCUtR upgrades the relayed connection to a
direct one (TCP simultaneous open through both NATs); the relayed connection is closed after its grace
period and groups keep flowing over the direct one; no error in any log.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from swarmrl.swarm.identity import Identity
from tests.integration.swarm_procs import Proc
from tests.netns.test_wan import CONTROL_PORT, METRICS_PORT, P2P_PORT, WanNode, launch, stopping
from tests.netns.topology import Wan, netns_available
from tests.nodeutil import wait_for

pytestmark = pytest.mark.netns


@pytest.fixture
def net(tmp_path: Path) -> Any:
    reason = netns_available()
    if reason is not None:
        pytest.skip(reason)
    wan = Wan(3, {}, default_ms=0.0, delay_relay=False)
    try:
        wan.up(tmp_path)
        yield wan
    finally:
        wan.close()


def _up(net: Wan, root: Path, i: int, process: subprocess.Popen[bytes]) -> WanNode:
    data = root / f"n{i}"
    proc = Proc(f"n{i}", data, data / "node.log", root / f"n{i}.yaml", process)
    proc.wait_up()
    return WanNode(proc, net.forward(i, CONTROL_PORT), net.forward(i, METRICS_PORT))


def _logged(node: WanNode, *needles: str) -> bool:
    return any(all(n in line for n in needles) for line in node.proc.log.read_text().splitlines())


def test_nodes_behind_nat_join_through_a_relay_and_hole_punch(net: Wan, tmp_path: Path) -> None:
    net.nat(1)
    net.nat(2)
    ids = [Identity.generate() for _ in range(3)]
    for i, ident in enumerate(ids):
        ident.save(tmp_path / f"n{i}" / "identity.key")
    pid = [ident.peer_id_text for ident in ids]
    boot = f"/ip4/{net.addr(0)}/tcp/{P2P_PORT}/p2p/{pid[0]}"
    swarm: list[dict[str, Any]] = [
        {"listen_host": net.addr(0), "relay": True},
        {"listen_host": net.nat_addr(1), "bootstrap_peers": [boot], "relay_reserve": True},
        {"listen_host": net.nat_addr(2), "bootstrap_peers": [boot], "relay_reserve": True},
    ]
    # the NATed nodes start first and come up alone (their dials to the relay fail); then the relay starts
    procs = launch(net, tmp_path, swarm, only=[1, 2])
    with stopping(procs):
        nodes = {i: _up(net, tmp_path, i, process) for i, process in zip((1, 2), procs, strict=True)}
        procs.extend(launch(net, tmp_path, swarm, only=[0]))
        nodes[0] = _up(net, tmp_path, 0, procs[-1])
        a, b = nodes[1], nodes[2]
        for me, other in ((1, 2), (2, 1)):
            assert not net.can_connect(me, net.nat_addr(other), P2P_PORT), (
                f"n{other}'s private address is dialable"
            )
            assert not net.can_connect(me, net.addr(other), P2P_PORT), (
                f"n{other}'s router forwards inbound: no NAT"
            )
            assert net.can_connect(me, net.addr(0), P2P_PORT), f"n{me} cannot dial out"

        wait_for(
            lambda: all(_logged(n, "reserved a relay slot") for n in (a, b)), 120, "both relay slots", 1.0
        )
        wait_for(
            lambda: _logged(a, "through a relay", "connected to", pid[2]) or _logged(b, "through a relay", "connected to", pid[1]),
            120, "a connection between the NATed nodes through the relay", 1.0,
        )  # fmt: skip

        def both_ways(base: tuple[int, int]) -> bool:
            return a.accepted().get(pid[2], 0) > base[0] and b.accepted().get(pid[1], 0) > base[1]

        wait_for(lambda: both_ways((0, 0)), 120, "groups to flow both ways between the NATed nodes", 1.0)
        wait_for(
            lambda: _logged(a, "hole punch", "direct", pid[2]) or _logged(b, "hole punch", "direct", pid[1]),
            120, "DCUtR to upgrade the relayed connection to a direct one", 1.0,
        )  # fmt: skip
        # the direct connection runs between the two routers' public addresses: through both NATs
        assert _logged(a, "hole punch", f"({net.addr(2)}:") or _logged(b, "hole punch", f"({net.addr(1)}:"), (
            a.proc.tail(),
            b.proc.tail(),
        )
        # DCUtR closes the relayed connection a grace period (60 s) after the upgrade; traffic stays
        wait_for(
            lambda: _logged(a, "relayed connection to", "closed", pid[2]) or _logged(b, "relayed connection to", "closed", pid[1]),
            150, "the relayed connection to close after the upgrade", 1.0,
        )  # fmt: skip
        after = (a.accepted().get(pid[2], 0), b.accepted().get(pid[1], 0))
        wait_for(lambda: both_ways(after), 120, "groups to keep flowing over the direct connection", 1.0)
        bad = {n.proc.name: n.proc.bad_log_lines()[:5] for n in nodes.values() if n.proc.bad_log_lines()}
        assert not bad, bad
