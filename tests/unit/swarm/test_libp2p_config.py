"""Libp2pTransport constructor checks: bad values fail fast with the field and a fix, before any socket."""

from __future__ import annotations

import asyncio
import os

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from swarmrl.errors import ConfigError, TransportError
from swarmrl.swarm.transports.libp2p.transport import Libp2pTransport, topic_for


def test_peer_id_matches_libp2p_for_raw_key_and_keypair() -> None:
    kp = create_new_key_pair()
    expected = ID.from_pubkey(kp.public_key).to_base58()
    assert Libp2pTransport(kp, "s").peer_id == expected
    seed = os.urandom(32)
    assert Libp2pTransport(seed, "s").peer_id == Libp2pTransport(seed, "other").peer_id


def test_topic_is_per_swarm() -> None:
    assert topic_for("abc") == "/swarmrl/abc/rollouts/1"
    assert Libp2pTransport(os.urandom(32), "abc").topic == "/swarmrl/abc/rollouts/1"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"private_key": b"short"}, "libp2p.private_key"),
        ({"swarm_id": ""}, "libp2p.swarm_id"),
        ({"psk": b"x" * 31}, "libp2p.psk"),
        ({"bootstrap": ["/ip4/127.0.0.1/tcp/4001"]}, "libp2p.bootstrap"),
        ({"bootstrap": ["not a multiaddr"]}, "libp2p.bootstrap"),
        ({"max_message_bytes": 2 * 1024 * 1024}, "libp2p.max_message_bytes"),
        ({"publish_rate": 600.0}, "libp2p.publish_rate"),
        ({"heartbeat_s": 0.0}, "libp2p.heartbeat_s"),
        ({"listen_port": 70000}, "libp2p.listen_port"),
        ({"mesh_grace_s": -1.0}, "libp2p.mesh_grace_s"),
    ],
)
def test_bad_values_raise_config_error(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {"private_key": os.urandom(32), "swarm_id": "s", **kwargs}
    with pytest.raises(ConfigError) as info:
        Libp2pTransport(**args)  # type: ignore[arg-type]
    assert info.value.field == field


def test_publish_before_start_and_close_before_start() -> None:
    async def body() -> None:
        t = Libp2pTransport(os.urandom(32), "s")
        assert t.peers() == [] and t.listen_addrs() == []
        with pytest.raises(TransportError, match="call start"):
            await t.publish(b"x")
        await t.close()
        await t.close()  # idempotent
        with pytest.raises(TransportError):
            await t.start()

    asyncio.run(body())
