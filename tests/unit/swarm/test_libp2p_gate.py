"""The libp2p inbound gate: per-address handshake shares, and inbound slots given back when connections close."""

from __future__ import annotations

from typing import Any

import multiaddr
import pytest
import trio
from libp2p import new_host
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519_key_pair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.peerinfo import info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from pydantic import ValidationError

from swarmrl.config.swarm import SwarmSection
from swarmrl.errors import ConfigError
from swarmrl.swarm.transports.libp2p.hardened import HandshakeGate, address_key
from swarmrl.swarm.transports.libp2p.transport import Libp2pTransport


class Raw:
    """What the gate reads of a raw connection: its remote address (and the stream it wraps)."""

    def __init__(self, ip: str) -> None:
        self.ip = ip
        self.stream = object()

    def get_remote_address(self) -> tuple[str, int]:
        return (self.ip, 40000)


async def stall(_raw: object, _addr: object) -> str:
    await trio.sleep(60)
    return "never"


async def quick(_raw: object, _addr: object) -> str:
    await trio.sleep(0.01)
    return "done"


def test_one_address_never_holds_more_than_its_share_and_others_get_in() -> None:
    async def main() -> None:
        gate = HandshakeGate(limit=8, timeout_s=30.0, per_address=2, min_age_s=0.5)
        outcomes: dict[str, list[str]] = {"attacker": [], "newcomer": []}

        async def attempt(who: str, ip: str, inner: Any) -> None:
            try:
                outcomes[who].append(await gate.run(inner, Raw(ip), None))
            except Exception as exc:
                outcomes[who].append(type(exc).__name__)

        async with trio.open_nursery() as nursery:
            for _ in range(30):  # a burst of fresh stalled handshakes from one address
                nursery.start_soon(attempt, "attacker", "127.0.0.2", stall)
            await trio.sleep(0.05)
            assert gate.pending == 2 and gate.pending_from("127.0.0.2") == 2
            nursery.start_soon(attempt, "newcomer", "127.0.0.3", quick)
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        assert outcomes["newcomer"] == ["done"]
        assert gate.refused_address == 28 and gate.refused == 0 and gate.evicted == 0

    trio.run(main)


def test_an_address_at_its_share_replaces_its_own_oldest_once_it_is_old_enough() -> None:
    async def main() -> None:
        gate = HandshakeGate(limit=8, timeout_s=30.0, per_address=2, min_age_s=0.2)
        results: list[str] = []

        async def attempt(ip: str, inner: Any) -> None:
            try:
                results.append(await gate.run(inner, Raw(ip), None))
            except Exception as exc:
                results.append(type(exc).__name__)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(attempt, "10.0.0.1", stall)
            nursery.start_soon(attempt, "10.0.0.1", stall)
            nursery.start_soon(attempt, "10.0.0.9", stall)  # someone else's, untouched throughout
            await trio.sleep(0.3)
            nursery.start_soon(attempt, "10.0.0.1", quick)  # evicts 10.0.0.1's own oldest
            await trio.sleep(0.1)
            assert gate.pending_from("10.0.0.1") == 1 and gate.pending_from("10.0.0.9") == 1
            nursery.cancel_scope.cancel()
        assert results[:2] == ["SwarmException", "done"]
        assert gate.evicted == 1

    trio.run(main)


def test_when_full_the_greediest_address_gives_up_a_slot_even_if_young() -> None:
    async def main() -> None:
        gate = HandshakeGate(limit=5, timeout_s=30.0, per_address=3, min_age_s=10.0)
        results: list[tuple[str, str]] = []

        async def attempt(ip: str, inner: Any) -> None:
            try:
                results.append((ip, await gate.run(inner, Raw(ip), None)))
            except Exception as exc:
                results.append((ip, type(exc).__name__))

        async with trio.open_nursery() as nursery:
            for ip in ("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.3"):
                nursery.start_soon(attempt, ip, stall)
                await trio.sleep(0.01)
            assert gate.pending == 5
            nursery.start_soon(attempt, "10.0.0.4", quick)  # 10.0.0.1 holds 3 >= 0 + 2: it pays
            await trio.sleep(0.1)
            assert gate.pending_from("10.0.0.1") == 2
            nursery.start_soon(attempt, "10.0.0.5", stall)  # 2, 1, 1, 1: full again
            await trio.sleep(0.05)
            nursery.start_soon(attempt, "10.0.0.6", quick)  # 10.0.0.1 still holds 2 >= 0 + 2: pays again
            await trio.sleep(0.1)
            nursery.start_soon(attempt, "10.0.0.7", stall)  # one slot each now, full
            await trio.sleep(0.05)
            nursery.start_soon(attempt, "10.0.0.8", quick)  # nobody holds 2 more, all young: refused
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        assert ("10.0.0.4", "done") in results and ("10.0.0.6", "done") in results
        assert results.count(("10.0.0.1", "SwarmException")) == 2
        assert ("10.0.0.8", "SwarmException") in results
        assert gate.refused == 1 and gate.evicted == 2

    trio.run(main)


def test_address_keys() -> None:
    assert address_key(("127.0.0.2", 1)) == "127.0.0.2"
    assert address_key(("::ffff:10.1.2.3", 1)) == "10.1.2.3"
    assert address_key(("2001:db8:1:2:aaaa::1", 1)) == address_key(("2001:db8:1:2:bbbb::7", 1))
    assert address_key(("2001:db8:1:2::1", 1)) != address_key(("2001:db8:1:3::1", 1))
    assert address_key(None) == "?"


def _host(config: ConnectionConfig | None = None) -> Any:
    kp = create_new_key_pair()
    noise = NoiseTransport(kp, noise_privkey=create_x25519_key_pair().private_key)
    return new_host(key_pair=kp, sec_opt={NOISE_PROTOCOL_ID: noise}, connection_config=config)


def test_inbound_slots_come_back_when_connections_close() -> None:
    """py-libp2p 0.8.1 alone keeps each inbound connection's slot until the swarm stops: with 4 inbound
    slots the fifth peer that connects (after the first four left) is refused. Through the gate it is not."""

    async def main() -> None:
        config = ConnectionConfig(max_connections=10, min_connections=6, low_watermark=6, high_watermark=10)
        server = _host(config)
        gate = HandshakeGate(limit=8, timeout_s=5.0, per_address=2)
        gate.install(server.get_network())
        async with server.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            info = info_from_p2p_addr(multiaddr.Multiaddr(str(server.get_addrs()[0])))
            limiter = server.get_network()._inbound_limiter
            assert limiter.total_tokens == 4
            for _ in range(7):
                client = _host()
                async with client.run([multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
                    with trio.fail_after(20):
                        await client.connect(info)
                    await client.disconnect(info.peer_id)
                with trio.fail_after(20):
                    while limiter.borrowed_tokens > 0:
                        await trio.sleep(0.05)
            assert gate.released == 7

    trio.run(main)


def test_the_per_address_share_is_validated() -> None:
    with pytest.raises(ValidationError, match="max_pending_handshakes_per_address"):
        SwarmSection(max_pending_handshakes=8, max_pending_handshakes_per_address=9)
    assert SwarmSection().max_pending_handshakes_per_address == 4
    with pytest.raises(ConfigError, match="max_pending_handshakes_per_address"):
        Libp2pTransport(b"\x01" * 32, "s", max_pending_handshakes=2, max_pending_handshakes_per_address=3)
