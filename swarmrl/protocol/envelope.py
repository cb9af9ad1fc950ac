"""Encode, sign, verify and decode swarm messages: the one place where wire bytes become trusted objects.

Signing is ed25519 over a *canonical* serialisation of every Envelope field but the signature (a domain tag,
then fixed-width integers and length-prefixed byte strings), never over protobuf bytes, which are not
canonical. Every check that depends on input size runs after a cheaper bound on that size: the byte length
before any parsing, counts before iterating, lengths before hashing or comparing.

Every failure is a ``ProtocolError(reason, message)`` whose reason is one of ``REASONS``.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf.message import DecodeError

from swarmrl.errors import ProtocolError
from swarmrl.protocol import peerid, swarm_pb2
from swarmrl.protocol.types import Completion, PolicyInfo, RolloutGroup, TaskRef

WIRE_VERSION = 1
SIGNATURE_BYTES = 64

#: Every rejection reason (the label set of ``swarmrl_rollouts_rejected_total``); bounded on purpose.
REASONS = frozenset(
    {
        "oversized",  # envelope larger than limits.max_envelope_bytes
        "malformed",  # not a decodable envelope/batch, unknown version, bad field shapes
        "limits",  # too many groups or completions, or texts too long
        "wrong_swarm",  # envelope for another swarm id
        "not_allowed",  # sender not on the allowlist of a private swarm
        "banned",  # sender (or the peer relaying) is banned for misbehaviour
        "bad_signature",  # signature does not verify against the sender's key
        "replay",  # sequence number already seen (or too old), or timestamp outside the accepted window
        "rate_limited",  # sender above its token-bucket rate
        "duplicate",  # group content already accepted
        "own_envelope",  # an envelope this node signed, handed back to it
        "over_budget",  # bounded ingress: sender not selected by this node, or over its quota this round
        "task_mismatch",  # question or answer differ from the locally regenerated task
        "unverifiable_task",  # the task cannot be regenerated here (and unverified tasks are not allowed)
        "unverifiable_dataset",  # the task is a row of a data file this node does not hold (or holds otherwise)
    }
)

_ENVELOPE_DOMAIN = b"swarmrl/envelope/v1\x00"
_HELLO_DOMAIN = b"swarmrl/hello/v2\x00"
#: Size of the random challenge each side of a stream sends; the other side's Hello signs it.
CHALLENGE_BYTES = 16
#: Longest listen address a Hello may carry.
MAX_HELLO_ADDR_CHARS = 256


class Signer(Protocol):
    """Anything that holds an ed25519 key: ``peer_id`` (binary) and ``sign(data) -> 64-byte signature``."""

    @property
    def peer_id(self) -> bytes: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what a receiver accepts (built from ``swarm.limits`` in the config)."""

    max_envelope_bytes: int = 1_000_000
    max_groups_per_batch: int = 64
    max_completions_per_group: int = 64
    max_completion_chars: int = 16_384
    max_question_chars: int = 16_384
    #: Longest TaskRef string (source, dataset, config digest) accepted.
    max_ref_chars: int = 128
    #: Longest advisory metadata string (PolicyInfo model and node name) accepted.
    max_meta_chars: int = 256


def _lp(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def canonical_envelope(
    version: int, swarm_id: str, sender: bytes, seq: int, sent_unix_ms: int, payload: bytes
) -> bytes:
    """The exact bytes an envelope signature covers."""
    return b"".join(
        (
            _ENVELOPE_DOMAIN,
            struct.pack(">I", version),
            _lp(swarm_id.encode("utf-8")),
            _lp(sender),
            struct.pack(">Qq", seq, sent_unix_ms),
            _lp(payload),
        )
    )


def canonical_hello(
    version: int, swarm_id: str, peer_id: bytes, sent_unix_ms: int, listen_addr: str, challenge: bytes
) -> bytes:
    """The exact bytes a Hello signature covers: fields 1-5 and the challenge the *other* side of this
    stream sent (not a message field: each side knows the challenge it issued), which binds the Hello to
    one stream so a recorded Hello cannot be replayed on another."""
    return b"".join(
        (
            _HELLO_DOMAIN,
            struct.pack(">I", version),
            _lp(swarm_id.encode("utf-8")),
            _lp(peer_id),
            struct.pack(">q", sent_unix_ms),
            _lp(listen_addr.encode("utf-8")),
            _lp(challenge),
        )
    )


def _verify(public_key: bytes, signature: bytes, data: bytes) -> None:
    if len(signature) != SIGNATURE_BYTES:
        raise ProtocolError(
            "bad_signature", f"signature must be {SIGNATURE_BYTES} bytes, got {len(signature)}"
        )
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        raise ProtocolError("bad_signature", "signature does not match the sender's key") from None


# ----------------------------------------------------------------------------------------- domain <-> wire


def group_to_pb(group: RolloutGroup) -> swarm_pb2.RolloutGroup:
    """Wire form of a group: text only (token ids, log-probs and local rewards stay home)."""
    t = group.task
    return swarm_pb2.RolloutGroup(
        task=swarm_pb2.TaskRef(
            source=t.source, dataset=t.dataset, config_digest=t.config_digest, seed=t.seed, index=t.index
        ),
        question=group.question,
        answer=group.answer,
        completions=[_completion_to_pb(c) for c in group.completions],
        policy=swarm_pb2.PolicyInfo(
            model=group.policy.model, version=group.policy.version, node=group.policy.node
        ),
        advisory_rewards=list(group.advisory_rewards),
    )


def task_from_pb(task: swarm_pb2.TaskRef) -> TaskRef:
    return TaskRef(task.source, task.dataset, task.config_digest, task.seed, task.index)


def check_group(pb: swarm_pb2.RolloutGroup, limits: Limits) -> None:
    n = len(pb.completions)
    if n > limits.max_completions_per_group:
        raise ProtocolError("limits", f"{n} completions in a group (max {limits.max_completions_per_group})")
    if n == 0:
        raise ProtocolError("malformed", "a group without completions")
    if not pb.HasField("task"):
        raise ProtocolError("malformed", "a group without a TaskRef")
    t = pb.task
    for text in (t.source, t.dataset, t.config_digest):
        if len(text) > limits.max_ref_chars:
            raise ProtocolError("limits", f"TaskRef string of {len(text)} chars (max {limits.max_ref_chars})")
    for text in (pb.policy.model, pb.policy.node):
        if len(text) > limits.max_meta_chars:
            raise ProtocolError(
                "limits", f"policy metadata string of {len(text)} chars (max {limits.max_meta_chars})"
            )
    for text in (pb.question, pb.answer):
        if len(text) > limits.max_question_chars:
            raise ProtocolError(
                "limits", f"question/answer of {len(text)} chars (max {limits.max_question_chars})"
            )
    for c in pb.completions:
        if len(c.text) > limits.max_completion_chars:
            raise ProtocolError(
                "limits", f"completion of {len(c.text)} chars (max {limits.max_completion_chars})"
            )
    rewards = pb.advisory_rewards
    if rewards and len(rewards) != n:
        raise ProtocolError("malformed", f"{len(rewards)} advisory rewards for {n} completions")
    if not all(math.isfinite(r) for r in rewards):
        raise ProtocolError("malformed", "advisory rewards must be finite")
    for c in pb.completions:
        if c.HasField("behaviour_logprob") and not (
            math.isfinite(c.behaviour_logprob) and c.behaviour_logprob <= 0.0
        ):
            raise ProtocolError("malformed", "a behaviour log-prob must be finite and <= 0")


def _completion_to_pb(c: Completion) -> swarm_pb2.Completion:
    pb = swarm_pb2.Completion(text=c.text, finished=c.finished)
    if c.behaviour_logprob is not None:
        pb.behaviour_logprob = c.behaviour_logprob
    return pb


def _completion_from_pb(pb: swarm_pb2.Completion) -> Completion:
    lp = pb.behaviour_logprob if pb.HasField("behaviour_logprob") else None
    return Completion(text=pb.text, finished=pb.finished, behaviour_logprob=lp)


def group_from_pb(pb: swarm_pb2.RolloutGroup, peer: str, limits: Limits) -> RolloutGroup:
    """A received group as a domain object, marked external and attributed to ``peer``; checks limits first."""
    check_group(pb, limits)
    return RolloutGroup(
        task=task_from_pb(pb.task),
        question=pb.question,
        answer=pb.answer,
        completions=[_completion_from_pb(c) for c in pb.completions],
        policy=PolicyInfo(model=pb.policy.model, version=pb.policy.version, node=pb.policy.node),
        advisory_rewards=list(pb.advisory_rewards),
        origin="external",
        peer=peer,
    )


# ----------------------------------------------------------------------------------------------- envelopes


def encode_batch(groups: list[RolloutGroup]) -> bytes:
    """Serialised RolloutBatch payload for ``groups``."""
    return swarm_pb2.RolloutBatch(groups=[group_to_pb(g) for g in groups]).SerializeToString()


def seal(signer: Signer, swarm_id: str, seq: int, payload: bytes, sent_unix_ms: int) -> bytes:
    """A signed, serialised Envelope carrying ``payload``."""
    sender = signer.peer_id
    signature = signer.sign(canonical_envelope(WIRE_VERSION, swarm_id, sender, seq, sent_unix_ms, payload))
    env = swarm_pb2.Envelope(
        version=WIRE_VERSION,
        swarm_id=swarm_id,
        sender=sender,
        seq=seq,
        sent_unix_ms=sent_unix_ms,
        payload=payload,
        signature=signature,
    )
    return env.SerializeToString()


def open_envelope(data: bytes, limits: Limits) -> swarm_pb2.Envelope:
    """Size check, then parse and shape check (no signature check yet: see ``verify_envelope``)."""
    if len(data) > limits.max_envelope_bytes:
        raise ProtocolError("oversized", f"{len(data)} bytes (max {limits.max_envelope_bytes})")
    env = swarm_pb2.Envelope()
    try:
        env.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ProtocolError("malformed", f"not an Envelope: {exc}") from None
    if env.version != WIRE_VERSION:
        raise ProtocolError(
            "malformed", f"unknown envelope version {env.version} (this node speaks {WIRE_VERSION})"
        )
    peerid.public_key_of(env.sender)
    if not env.signature:
        raise ProtocolError("bad_signature", "unsigned envelope")
    return env


def verify_envelope(env: swarm_pb2.Envelope) -> None:
    """Raise ProtocolError('bad_signature') unless the sender's key signed every other field."""
    data = canonical_envelope(env.version, env.swarm_id, env.sender, env.seq, env.sent_unix_ms, env.payload)
    _verify(peerid.public_key_of(env.sender), env.signature, data)


def decode_batch(payload: bytes, peer: str, limits: Limits) -> list[RolloutGroup]:
    """Groups of an authenticated payload; counts are checked before any group is converted."""
    batch = swarm_pb2.RolloutBatch()
    try:
        batch.ParseFromString(payload)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ProtocolError("malformed", f"payload is not a RolloutBatch: {exc}") from None
    n = len(batch.groups)
    if n > limits.max_groups_per_batch:
        raise ProtocolError("limits", f"{n} groups in one envelope (max {limits.max_groups_per_batch})")
    if n == 0:
        raise ProtocolError("malformed", "an envelope without groups")
    return [group_from_pb(g, peer, limits) for g in batch.groups]


# -------------------------------------------------------------------------------------------------- hellos


def make_hello(
    signer: Signer, swarm_id: str, listen_addr: str, sent_unix_ms: int, challenge: bytes
) -> swarm_pb2.Hello:
    """A signed Hello proving that the stream's other end holds ``signer``'s key, answering the other
    side's ``challenge`` on this stream."""
    pid = signer.peer_id
    sig = signer.sign(canonical_hello(WIRE_VERSION, swarm_id, pid, sent_unix_ms, listen_addr, challenge))
    return swarm_pb2.Hello(
        version=WIRE_VERSION,
        swarm_id=swarm_id,
        peer_id=pid,
        sent_unix_ms=sent_unix_ms,
        listen_addr=listen_addr,
        signature=sig,
    )


def verify_hello(
    hello: swarm_pb2.Hello, swarm_id: str, now_unix_ms: int, max_skew_ms: int, challenge: bytes
) -> str:
    """Check a peer's Hello (version, swarm, freshness, signature over our ``challenge`` for this stream);
    return its base58 peer id."""
    if len(challenge) != CHALLENGE_BYTES:
        raise ProtocolError("malformed", "no valid challenge for this stream")
    if len(hello.listen_addr) > MAX_HELLO_ADDR_CHARS:
        raise ProtocolError("limits", f"hello listen address of {len(hello.listen_addr)} chars")
    if hello.version != WIRE_VERSION:
        raise ProtocolError("malformed", f"unknown hello version {hello.version}")
    if hello.swarm_id != swarm_id:
        raise ProtocolError("wrong_swarm", f"peer is in swarm {hello.swarm_id[:64]!r}, not {swarm_id!r}")
    if abs(now_unix_ms - hello.sent_unix_ms) > max_skew_ms:
        raise ProtocolError("replay", "hello timestamp outside the accepted clock window")
    data = canonical_hello(
        hello.version, hello.swarm_id, hello.peer_id, hello.sent_unix_ms, hello.listen_addr, challenge
    )
    _verify(peerid.public_key_of(hello.peer_id), hello.signature, data)
    return peerid.to_text(hello.peer_id)
