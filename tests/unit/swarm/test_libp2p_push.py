"""The push protocol's frame and control-message checks (pure functions; the streams are tested in
tests/integration/test_libp2p_transport.py)."""

from __future__ import annotations

import json

import pytest
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.peer.id import ID

from swarmrl.swarm.lru import LRU
from swarmrl.swarm.transports.libp2p.push import (
    KIND_ENVELOPE,
    MAX_ADDRS_PER_PEER,
    SEEN_GOSSIP,
    SEEN_OWN,
    SEEN_PUSH,
    MalformedFrame,
    _json_body,
    _valid_addrs,
    _valid_peer_id,
    encode_frame,
    envelope_digest,
    first_on_path,
)


def _peer() -> str:
    return ID.from_pubkey(create_new_key_pair().public_key).to_base58()


def test_frame_layout_is_length_kind_body() -> None:
    frame = encode_frame(KIND_ENVELOPE, b"abc")
    assert frame == b"\x00\x00\x00\x03\x03abc"


def test_digest_tells_envelopes_apart() -> None:
    assert envelope_digest(b"a") == envelope_digest(b"a")
    assert envelope_digest(b"a") != envelope_digest(b"b")
    assert len(envelope_digest(b"a" * 100_000)) == 16


def test_addresses_keep_only_the_peers_own_tcp_addrs() -> None:
    me, other = _peer(), _peer()
    own = f"/ip4/127.0.0.1/tcp/4001/p2p/{me}"
    kept = _valid_addrs(me, [own, f"/ip4/127.0.0.1/tcp/4002/p2p/{other}", f"/ip4/127.0.0.1/udp/9/p2p/{me}"])
    assert kept == (own,)


@pytest.mark.parametrize(
    "raw",
    [
        "not-a-list",
        [1, 2],
        ["x" * 400],
        ["/ip4/127.0.0.1/tcp/1/p2p/PEER"] * (MAX_ADDRS_PER_PEER + 1),
        ["/ip4/999.1.1.1/tcp/1/p2p/PEER"],
    ],
)
def test_bad_address_lists_are_malformed(raw: object) -> None:
    peer = _peer()
    if isinstance(raw, list):
        raw = [x.replace("PEER", peer) if isinstance(x, str) else x for x in raw]
    with pytest.raises(MalformedFrame):
        _valid_addrs(peer, raw)


def test_peer_ids_are_checked() -> None:
    peer = _peer()
    assert _valid_peer_id(peer)[1].to_base58() == peer
    for bad in ("not-base58-0OIl", 42, "1" * 200):
        with pytest.raises(MalformedFrame):
            _valid_peer_id(bad)


def test_control_bodies_must_be_json_objects() -> None:
    assert _json_body(json.dumps({"topic": "t"}).encode()) == {"topic": "t"}
    for bad in (b"\xff\xfe", b"[1, 2]", b"not json"):
        with pytest.raises(MalformedFrame):
            _json_body(bad)


def test_second_copy_over_the_other_path_is_dropped_but_replays_are_not() -> None:
    seen: LRU[bytes, int] = LRU(16)
    assert first_on_path(seen, b"env", SEEN_PUSH)
    assert not first_on_path(seen, b"env", SEEN_GOSSIP), "the gossip copy of a pushed envelope"
    assert first_on_path(seen, b"env", SEEN_PUSH), "a second push is a replay: the receive path judges it"
    assert first_on_path(seen, b"other", SEEN_GOSSIP)
    assert not first_on_path(seen, b"other", SEEN_PUSH)
    seen.put(envelope_digest(b"mine"), SEEN_OWN)
    assert not first_on_path(seen, b"mine", SEEN_PUSH) and not first_on_path(seen, b"mine", SEEN_GOSSIP)
