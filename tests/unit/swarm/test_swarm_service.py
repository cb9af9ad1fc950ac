"""The Swarm facade over the in-memory transport: publish -> validate -> pool -> sample, allowlists,
persistence of replay state, and a swarm of many nodes on one loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from swarm_helpers import exact_match, group, regenerate

from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError
from swarmrl.swarm.events import CountingEvents
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.service import Swarm
from swarmrl.swarm.transports.factory import build_transport
from swarmrl.swarm.transports.libp2p.transport import read_psk
from swarmrl.swarm.transports.memory import MemoryHub
from swarmrl.swarm.transports.null import NullTransport


def config(**swarm: Any) -> NodeConfig:
    base: dict[str, Any] = {"transport": "memory", "swarm_id": "test-swarm", "max_publish_per_second": 1000}
    base.update(swarm)
    return NodeConfig.model_validate({"swarm": base, "sampling": {"strategy": "uniform"}})


def node(hub: MemoryHub, cfg: NodeConfig, data_dir: Path | None = None) -> Swarm:
    ident = Identity.generate()
    events = CountingEvents()
    transport = build_transport(cfg, ident, data_dir or Path("."), events=events, hub=hub)
    return Swarm(cfg, ident, transport, regenerate, events, data_dir=data_dir)


async def until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not cond():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


def test_groups_flow_between_nodes() -> None:
    async def run() -> None:
        hub = MemoryHub()
        a, b, c = (node(hub, config()) for _ in range(3))
        for n in (a, b, c):
            await n.start()
        assert {p.peer_id for p in a.peers()} == {b.peer_id, c.peer_id}
        assert await a.publish([group(305), group(1207)], round=1) == 1
        await until(lambda: b.pool_size() == 2 and c.pool_size() == 2)
        assert a.pool_size() == 0  # never receives its own
        got = b.sample(4, round=1, rescore=exact_match)
        assert len(got) == 2 and b.pool_size() == 0
        assert {g.origin for g in got} == {"external"} and {g.peer for g in got} == {a.peer_id}
        assert isinstance(a.events, CountingEvents) and a.events.published_groups == 2
        assert isinstance(b.events, CountingEvents) and b.events.accepted_groups == 2
        for n in (a, b, c):
            await n.close()

    asyncio.run(run())


def test_publish_splits_batches_within_limits() -> None:
    async def run() -> None:
        hub = MemoryHub()
        cfg = config(limits={"max_groups_per_batch": 2})
        a, b = node(hub, cfg), node(hub, cfg)
        await a.start()
        await b.start()
        assert await a.publish([group(i) for i in range(5)], round=1) == 3
        await until(lambda: b.pool_size() == 5)
        assert isinstance(b.events, CountingEvents) and not b.events.rejections
        await a.close()
        await b.close()

    asyncio.run(run())


def test_allowlist_admits_only_listed_peers() -> None:
    async def run() -> None:
        hub = MemoryHub()
        ids = [Identity.generate() for _ in range(3)]
        allow = [ids[0].peer_id_text, ids[1].peer_id_text]
        private = config(admission={"allowlist": allow})
        nodes = []
        for ident, cfg in zip(ids, [private, private, config()], strict=True):
            events = CountingEvents()
            t = build_transport(cfg, ident, Path("."), events=events, hub=hub)
            nodes.append(Swarm(cfg, ident, t, regenerate, events))
        a, b, outsider = nodes
        for n in nodes:
            await n.start()
        assert {p.peer_id for p in a.peers()} == {b.peer_id}
        await outsider.publish([group(1)], round=1)
        await a.publish([group(2)], round=1)
        await until(lambda: b.pool_size() == 1)
        await asyncio.sleep(0.01)
        assert outsider.pool_size() == 0  # a published only to admitted peers
        assert [e.group.task.index for e in b.pool_entries()] == [2]  # nothing from the outsider
        for n in nodes:
            await n.close()

    asyncio.run(run())


def test_replay_state_persists_across_restart(tmp_path: Path) -> None:
    async def run() -> None:
        hub = MemoryHub()
        cfg = config()
        sender = node(hub, cfg)
        receiver = node(hub, cfg, data_dir=tmp_path)
        captured: list[bytes] = []
        sender.transport.publish = _capture(sender.transport.publish, captured)  # type: ignore[method-assign]
        await sender.start()
        await receiver.start()
        await sender.publish([group(1)], round=1)
        await until(lambda: receiver.pool_size() == 1)
        await receiver.close()
        assert (tmp_path / "swarm" / "replay.json").is_file()
        # a restarted receiver refuses the recorded envelope
        again = Swarm(
            cfg,
            receiver.identity,
            hub.transport(receiver.peer_id),
            regenerate,
            CountingEvents(),
            data_dir=tmp_path,
        )
        await again.start()
        again.receiver.handle(captured[0], sender.peer_id)
        assert isinstance(again.events, CountingEvents)
        assert again.events.rejections == {"replay": 1}
        await again.close()
        await sender.close()

    asyncio.run(run())


def _capture(publish: Callable[[bytes], Any], into: list[bytes]) -> Callable[[bytes], Any]:
    async def wrapped(data: bytes) -> None:
        into.append(data)
        await publish(data)

    return wrapped


def test_many_nodes_on_one_loop() -> None:
    async def run() -> None:
        hub = MemoryHub(latency_s=0.001, drop_rate=0.1, seed=3)
        nodes = [node(hub, config(ingress_groups_per_round=0)) for _ in range(60)]  # the old all-to-all
        for n in nodes:
            await n.start()
        for i, n in enumerate(nodes):
            await n.publish([group(1000 + i)], round=1)
        await until(lambda: hub.delivered + hub.dropped == 60 * 59)
        await until(lambda: sum(n.pool_size() for n in nodes) == hub.delivered)
        assert 0.8 < hub.delivered / (60 * 59) < 0.98
        assert all(not n.events.rejections for n in nodes if isinstance(n.events, CountingEvents))
        for n in nodes:
            await n.close()

    asyncio.run(run())


def test_bounded_ingress_many_nodes_on_one_loop() -> None:
    """60 nodes, each choosing 8 senders: every node hears from exactly its 8, senders push only to the nodes
    that chose them, and nothing is rejected (the selection is in place before anyone publishes)."""

    async def run() -> None:
        hub = MemoryHub(latency_s=0.001, seed=3)
        nodes = [node(hub, config(ingress_senders=8, ingress_groups_per_round=8)) for _ in range(60)]
        for n in nodes:
            await n.start()
        for n in nodes:
            n.rotate_ingress()  # everyone has joined: the first nodes now know more than 8 members too
        assert all(n.ingress.selection is not None and len(n.ingress.selection) == 8 for n in nodes)
        for i, n in enumerate(nodes):
            await n.publish([group(2000 + i)], round=1)
        await until(lambda: hub.delivered == 60 * 8)
        await until(lambda: sum(n.pool_size() for n in nodes) == 60 * 8)
        by_id = {n.peer_id: n for n in nodes}
        for n in nodes:
            assert n.received_envelopes == 8
            assert {e.peer for e in n.pool_entries()} == n.ingress.selection
        assert sum(by_id[p].received_envelopes for p in by_id) == 60 * 8
        assert all(not n.events.rejections for n in nodes if isinstance(n.events, CountingEvents))
        for n in nodes:
            await n.close()

    asyncio.run(run())


def test_build_transport_variants(tmp_path: Path) -> None:
    ident = Identity.generate()
    solo = NodeConfig.model_validate({"swarm": {"transport": "none"}})
    assert isinstance(build_transport(solo, ident, tmp_path), NullTransport)
    from swarmrl.swarm.transports.libp2p.transport import Libp2pTransport

    assert isinstance(build_transport(NodeConfig(), ident, tmp_path), Libp2pTransport)  # the default
    tuned = NodeConfig.model_validate({"swarm": {"direct_push": False, "max_peers": 5, "push_queue": 64}})
    lp = build_transport(tuned, ident, tmp_path)
    assert isinstance(lp, Libp2pTransport)
    assert (lp._config.direct_push, lp._config.max_peers, lp._config.push_queue) == (False, 5, 64)
    with pytest.raises(ConfigError, match="MemoryHub"):
        build_transport(config(), ident, tmp_path)
    from swarmrl.swarm.transports.grpc import GrpcTransport

    grpc_cfg = config(transport="grpc", grpc={"static_peers": ["127.0.0.1:1"]})
    assert isinstance(build_transport(grpc_cfg, ident, tmp_path), GrpcTransport)


def test_read_psk_formats(tmp_path: Path) -> None:
    key = bytes(range(32))
    (tmp_path / "swarm.key").write_text(f"/key/swarm/psk/1.0.0/\n/base16/\n{key.hex()}\n")
    (tmp_path / "raw.key").write_bytes(key)
    (tmp_path / "bad.key").write_text("short")
    assert read_psk(tmp_path / "swarm.key") == key
    assert read_psk(tmp_path / "raw.key") == key
    with pytest.raises(ConfigError):
        read_psk(tmp_path / "bad.key")


def test_build_transport_libp2p_is_wired_lazily(tmp_path: Path) -> None:
    pytest.importorskip("libp2p")
    from swarmrl.swarm.transports.libp2p.transport import Libp2pTransport

    ident = Identity.generate()
    (tmp_path / "swarm.key").write_text(bytes(range(32)).hex())
    cfg = config(transport="libp2p", psk_file=str(tmp_path / "swarm.key"))
    transport = build_transport(cfg, ident, tmp_path)
    assert isinstance(transport, Libp2pTransport)
    assert transport.peer_id == ident.peer_id_text
