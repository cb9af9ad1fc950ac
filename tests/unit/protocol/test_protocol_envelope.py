"""Envelope encode/sign/verify/decode, Hello handshakes and peer id encoding."""

from __future__ import annotations

import pytest

from swarmrl.errors import ProtocolError
from swarmrl.protocol import envelope as wire
from swarmrl.protocol import peerid, swarm_pb2
from swarmrl.protocol.types import Completion, PolicyInfo, RolloutGroup, TaskRef
from swarmrl.swarm.identity import Identity


def _group() -> RolloutGroup:
    return RolloutGroup(
        task=TaskRef("arith", "add", "d1", 3, 2**40),
        question="What is 2+2?",
        answer="4",
        completions=[
            Completion(text="4", token_ids=[1, 2], logprobs=[-0.1, -0.2]),
            Completion("5", finished=False),
        ],
        policy=PolicyInfo(model="tiny", version=7, node="n1"),
        advisory_rewards=[1.0, 0.0],
        rewards=[9.0, 9.0],
    )


def test_round_trip_keeps_text_and_drops_local_fields() -> None:
    ident = Identity.generate()
    data = wire.seal(ident, "s", 5, wire.encode_batch([_group()]), 1234)
    env = wire.open_envelope(data, wire.Limits())
    wire.verify_envelope(env)
    assert env.seq == 5 and env.sent_unix_ms == 1234 and env.swarm_id == "s"
    (got,) = wire.decode_batch(env.payload, ident.peer_id_text, wire.Limits())
    assert got.task == TaskRef("arith", "add", "d1", 3, 2**40)
    assert [c.text for c in got.completions] == ["4", "5"]
    assert [c.finished for c in got.completions] == [True, False]
    assert got.completions[0].token_ids == []  # token ids never cross the wire
    assert got.rewards == []  # local rewards never cross the wire
    assert got.advisory_rewards == [1.0, 0.0]
    assert got.policy == PolicyInfo("tiny", 7, "n1")
    assert got.origin == "external" and got.peer == ident.peer_id_text


@pytest.mark.parametrize("field", ["version", "swarm_id", "sender", "seq", "sent_unix_ms", "payload"])
def test_signature_covers_every_field(field: str) -> None:
    ident, other = Identity.generate(), Identity.generate()
    env = swarm_pb2.Envelope()
    env.ParseFromString(wire.seal(ident, "s", 5, wire.encode_batch([_group()]), 1234))
    changed = {
        "version": 2,
        "swarm_id": "t",
        "sender": other.peer_id,
        "seq": 6,
        "sent_unix_ms": 1235,
        "payload": env.payload + b"\x00",
    }[field]
    setattr(env, field, changed)
    with pytest.raises(ProtocolError) as err:
        wire.verify_envelope(env)
    assert err.value.reason == "bad_signature"


def test_open_rejects_oversized_malformed_and_foreign_senders() -> None:
    ident = Identity.generate()
    data = wire.seal(ident, "s", 1, wire.encode_batch([_group()]), 1)
    with pytest.raises(ProtocolError, match="oversized"):
        wire.open_envelope(data, wire.Limits(max_envelope_bytes=len(data) - 1))
    with pytest.raises(ProtocolError, match="malformed"):
        wire.open_envelope(b"\x08", wire.Limits())
    env = swarm_pb2.Envelope()
    env.ParseFromString(data)
    env.sender = b"\x12\x20" + bytes(32)  # a sha256 multihash: not an inline ed25519 key
    with pytest.raises(ProtocolError, match="malformed"):
        wire.open_envelope(env.SerializeToString(), wire.Limits())


def test_advisory_rewards_must_match_completions() -> None:
    g = _group()
    g.advisory_rewards = [1.0]
    payload = wire.encode_batch([g])
    with pytest.raises(ProtocolError, match="malformed"):
        wire.decode_batch(payload, "p", wire.Limits())
    g.advisory_rewards = [float("nan"), 1.0]
    with pytest.raises(ProtocolError, match="malformed"):
        wire.decode_batch(wire.encode_batch([g]), "p", wire.Limits())


def test_hello_proves_the_peer_id() -> None:
    ident, other = Identity.generate(), Identity.generate()
    nonce = b"\x01" * wire.CHALLENGE_BYTES
    hello = wire.make_hello(ident, "s", "127.0.0.1:1", 10_000, nonce)
    assert wire.verify_hello(hello, "s", 10_500, 1000, nonce) == ident.peer_id_text
    with pytest.raises(ProtocolError, match="wrong_swarm"):
        wire.verify_hello(hello, "t", 10_500, 1000, nonce)
    with pytest.raises(ProtocolError, match="replay"):
        wire.verify_hello(hello, "s", 20_000, 1000, nonce)
    # bound to the stream: the same Hello does not answer another stream's challenge
    with pytest.raises(ProtocolError, match="bad_signature"):
        wire.verify_hello(hello, "s", 10_500, 1000, b"\x02" * wire.CHALLENGE_BYTES)
    with pytest.raises(ProtocolError, match="malformed"):
        wire.verify_hello(hello, "s", 10_500, 1000, b"")
    hello.peer_id = other.peer_id
    with pytest.raises(ProtocolError, match="bad_signature"):
        wire.verify_hello(hello, "s", 10_500, 1000, nonce)


def test_base58_round_trip_and_errors() -> None:
    for data in (b"", b"\x00", b"\x00\x00\x01", bytes(range(38))):
        assert peerid.b58decode(peerid.b58encode(data)) == data
    ident = Identity.generate()
    assert peerid.from_text(ident.peer_id_text) == ident.peer_id
    with pytest.raises(ProtocolError):
        peerid.from_text("0OIl")
    with pytest.raises(ProtocolError):
        peerid.from_text("1" * 100)


def test_behaviour_logprob_round_trips_and_is_optional() -> None:
    g = _group()
    g.completions[0].behaviour_logprob = -0.3
    (got,) = wire.decode_batch(wire.encode_batch([g]), "p", wire.Limits())
    assert got.completions[0].behaviour_logprob == pytest.approx(-0.3)
    assert got.completions[1].behaviour_logprob is None  # not sent: no correction for that completion
    # An envelope written before the field existed (no field 3 on the wire) still decodes.
    old = swarm_pb2.RolloutBatch()
    pb = old.groups.add()
    pb.CopyFrom(wire.group_to_pb(_group()))
    for c in pb.completions:
        assert not c.HasField("behaviour_logprob")
    (legacy,) = wire.decode_batch(old.SerializeToString(), "p", wire.Limits())
    assert [c.behaviour_logprob for c in legacy.completions] == [None, None]
    assert [c.text for c in legacy.completions] == ["4", "5"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), 0.5])
def test_behaviour_logprob_must_be_a_finite_log_probability(bad: float) -> None:
    g = _group()
    g.completions[0].behaviour_logprob = bad
    with pytest.raises(ProtocolError, match="malformed"):
        wire.decode_batch(wire.encode_batch([g]), "p", wire.Limits())
