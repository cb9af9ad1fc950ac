"""The receive path: one test per rejection reason, plus bans, isolation between peers and the happy path."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from swarm_helpers import envelope, group, regenerate

from swarmrl.protocol import envelope as wire
from swarmrl.protocol import swarm_pb2
from swarmrl.protocol.types import Completion, RolloutGroup, TaskRef
from swarmrl.swarm.admission import Admission, AdmissionSettings
from swarmrl.swarm.clock import ManualClock
from swarmrl.swarm.events import CountingEvents
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.ratelimit import RateLimiter
from swarmrl.swarm.receive import ReceivePath, ReceiveSettings, Regenerate
from swarmrl.swarm.replay import ReplayGuard

SWARM = "test-swarm"


@dataclass
class Rig:
    path: ReceivePath
    events: CountingEvents
    clock: ManualClock
    accepted: list[RolloutGroup] = field(default_factory=list)


def make_rig(
    *,
    allowlist: frozenset[str] = frozenset(),
    rate: float = 5.0,
    burst: int = 20,
    allow_unverified: bool = False,
    limits: wire.Limits | None = None,
    regen: Regenerate = regenerate,
    window: int = 0,
) -> Rig:
    clock = ManualClock()
    events = CountingEvents()
    rig = Rig(path=None, events=events, clock=clock)  # type: ignore[arg-type]
    rig.path = ReceivePath(
        ReceiveSettings(
            swarm_id=SWARM,
            limits=limits or wire.Limits(),
            allow_unverified_tasks=allow_unverified,
        ),
        admission=Admission(AdmissionSettings(allowlist=allowlist, ban_threshold=-20, ban_seconds=60), clock),
        rate=RateLimiter(rate, burst, clock),
        replay=ReplayGuard(window=window),
        regenerate=regen,
        events=events,
        sink=rig.accepted.extend,
        clock=clock,
    )
    return rig


@pytest.fixture
def alice() -> Identity:
    return Identity.generate()


@pytest.fixture
def bob() -> Identity:
    return Identity.generate()


def test_valid_envelope_is_accepted_and_marked_external(alice: Identity) -> None:
    rig = make_rig()
    assert rig.path.handle(envelope(alice, [group(305), group(1207)]), "relay") == 2
    assert [g.origin for g in rig.accepted] == ["external", "external"]
    assert {g.peer for g in rig.accepted} == {alice.peer_id_text}
    assert rig.accepted[0].completions[0].text == "8"
    assert rig.events.accepted_groups == 2 and rig.events.received == 1
    assert not rig.events.rejections


def test_oversized_is_rejected_before_parsing(alice: Identity) -> None:
    rig = make_rig(limits=wire.Limits(max_envelope_bytes=2048))
    big = group(1, texts=["x" * 3000])
    assert rig.path.handle(envelope(alice, [big]), "p") == 0
    assert rig.events.rejections == {"oversized": 1}


def test_malformed_protobuf_is_rejected(alice: Identity) -> None:
    rig = make_rig()
    assert rig.path.handle(b"\xff\xff\xff\x0f garbage", "p") == 0
    assert rig.path.handle(b"", "p") == 0  # decodes to an all-default envelope: version 0
    assert rig.events.rejections == {"malformed": 2}


def test_malformed_payload_from_signed_sender(alice: Identity) -> None:
    rig = make_rig()
    data = wire.seal(alice, SWARM, 1, b"\x0a\xff\xff", 1_700_000_000_000)
    assert rig.path.handle(data, "p") == 0
    assert rig.events.rejections == {"malformed": 1}


def test_forged_signature_is_rejected(alice: Identity, bob: Identity) -> None:
    rig = make_rig()
    env = swarm_pb2.Envelope()
    env.ParseFromString(envelope(alice, [group(305)]))
    env.sender = bob.peer_id  # claim to be bob, signed by alice
    assert rig.path.handle(env.SerializeToString(), "mallory") == 0
    assert rig.path.admission.score("mallory") < 0
    env.sender = alice.peer_id
    env.payload = wire.encode_batch([group(306)])  # swap the payload under alice's signature
    assert rig.path.handle(env.SerializeToString(), "mallory2") == 0
    env.signature = b""
    assert rig.path.handle(env.SerializeToString(), "mallory3") == 0
    assert rig.events.rejections == {"bad_signature": 3}
    # forged messages are charged to the relaying peer, never to the impersonated sender
    assert rig.path.admission.score(bob.peer_id_text) == 0
    assert rig.path.admission.score(alice.peer_id_text) == 0


def test_wrong_swarm_id(alice: Identity) -> None:
    rig = make_rig()
    assert rig.path.handle(envelope(alice, [group(1)], swarm_id="other"), "p") == 0
    assert rig.events.rejections == {"wrong_swarm": 1}


def test_replay_of_same_sequence_number(alice: Identity) -> None:
    rig = make_rig()
    data = envelope(alice, [group(1)], seq=10)
    assert rig.path.handle(data, "p") == 1
    assert rig.path.handle(data, "p") == 0
    assert rig.path.handle(envelope(alice, [group(2)], seq=9), "p") == 0  # strictly increasing (window 0)
    assert rig.path.handle(envelope(alice, [group(3)], seq=11), "p") == 1
    assert rig.events.rejections == {"replay": 2}


def test_stale_and_future_timestamps_are_replays(alice: Identity) -> None:
    rig = make_rig()
    old = 1_700_000_000_000 - 3_600_000
    future = 1_700_000_000_000 + 3_600_000
    assert rig.path.handle(envelope(alice, [group(1)], seq=1, sent_unix_ms=old), "p") == 0
    assert rig.path.handle(envelope(alice, [group(2)], seq=2, sent_unix_ms=future), "p") == 0
    assert rig.events.rejections == {"replay": 2}


def test_flood_above_rate_limit(alice: Identity, bob: Identity) -> None:
    rig = make_rig(rate=1.0, burst=3)
    results = [rig.path.handle(envelope(alice, [group(i)], seq=i + 1), "p") for i in range(10)]
    assert results == [1, 1, 1] + [0] * 7
    assert rig.events.rejections == {"rate_limited": 7}
    # another peer is unaffected by alice's flood
    assert rig.path.handle(envelope(bob, [group(500)], seq=1), "q") == 1
    # the bucket refills with time
    rig.clock.advance(2.0)
    assert rig.path.handle(envelope(alice, [group(600)], seq=100), "p") == 1


def test_duplicate_group_content(alice: Identity, bob: Identity) -> None:
    rig = make_rig()
    assert rig.path.handle(envelope(alice, [group(1)], seq=1), "p") == 1
    # same content again under a fresh seq, and from another peer: dropped, other groups kept
    assert rig.path.handle(envelope(alice, [group(1), group(2)], seq=2), "p") == 1
    assert rig.path.handle(envelope(bob, [group(1)], seq=1), "q") == 0
    assert rig.events.rejections == {"duplicate": 2}
    assert len(rig.accepted) == 2


def test_tampered_answer_is_task_mismatch(alice: Identity) -> None:
    rig = make_rig()
    lie = group(305, answer="9")  # 3 + 5 is 8
    honest = group(1207)
    assert rig.path.handle(envelope(alice, [lie, honest]), "p") == 1
    assert [g.answer for g in rig.accepted] == ["19"]
    bad_question = group(42)
    bad_question.question = "What is 1+1?"
    assert rig.path.handle(envelope(alice, [bad_question], seq=2), "p") == 0
    assert rig.events.rejections == {"task_mismatch": 2}


def test_unverifiable_task_refused_unless_allowed(alice: Identity) -> None:
    foreign = group(1)
    foreign.task = TaskRef("unknown_source", "x", "d", 0, 1)
    rig = make_rig()
    assert rig.path.handle(envelope(alice, [foreign]), "p") == 0
    assert rig.events.rejections == {"unverifiable_task": 1}
    lenient = make_rig(allow_unverified=True)
    assert lenient.path.handle(envelope(alice, [foreign]), "p") == 1


def test_rows_of_a_file_we_do_not_hold_are_unverifiable_dataset_without_penalty(
    alice: Identity, tmp_path: Path
) -> None:
    from swarmrl.tasks import build_source
    from swarmrl.tasks.registry import regenerate as regenerate_from

    def source(text: str) -> Any:
        path = tmp_path / f"{abs(hash(text))}.jsonl"
        path.write_text(text)
        return build_source("dataset", "mine", {"path": str(path)}, seed=0, size=1)

    theirs = source('{"question": "2+2?", "answer": "4"}\n')
    ours = source('{"question": "2+2?", "answer": "5"}\n')  # another version of the file
    task = theirs.get(0)
    sent = RolloutGroup(task.ref, task.question, task.answer, [Completion("4"), Completion("3")])
    for held in ([ours], []):
        rig = make_rig(regen=lambda ref, held=held: regenerate_from(held, ref), burst=100)
        # More than the ban threshold's worth (-20) of refusals: an honest peer with other data is never banned.
        for seq in range(1, 31):
            assert rig.path.handle(envelope(alice, [sent], seq=seq), "p") == 0
        assert rig.events.rejections == {"unverifiable_dataset": 30}
        assert rig.path.admission.banned(alice.peer_id_text) is False
    holder = make_rig(
        regen=lambda ref: regenerate_from([source('{"question": "2+2?", "answer": "4"}\n')], ref)
    )
    assert holder.path.handle(envelope(alice, [sent], seq=1), "p") == 1


def test_regenerate_bug_does_not_escape(alice: Identity) -> None:
    def broken(ref: TaskRef) -> tuple[str, str]:
        raise ZeroDivisionError("bug")

    rig = make_rig(regen=broken)
    assert rig.path.handle(envelope(alice, [group(1)]), "p") == 0
    assert rig.events.rejections == {"unverifiable_task": 1}


def test_limits_on_counts_and_lengths(alice: Identity) -> None:
    limits = wire.Limits(max_groups_per_batch=2, max_completions_per_group=3, max_completion_chars=20)
    rig = make_rig(limits=limits)
    assert rig.path.handle(envelope(alice, [group(1), group(2), group(3)], seq=1), "p") == 0
    assert rig.path.handle(envelope(alice, [group(4, texts=["1"] * 4)], seq=2), "p") == 0
    assert rig.path.handle(envelope(alice, [group(5, texts=["x" * 21])], seq=3), "p") == 0
    assert rig.events.rejections == {"limits": 3}


def test_allowlist(alice: Identity, bob: Identity) -> None:
    rig = make_rig(allowlist=frozenset({alice.peer_id_text}))
    assert rig.path.handle(envelope(bob, [group(1)]), "q") == 0
    assert rig.path.handle(envelope(alice, [group(2)]), "p") == 1
    assert rig.events.rejections == {"not_allowed": 1}


def test_misbehaving_peer_is_banned_and_others_are_not_affected(alice: Identity, bob: Identity) -> None:
    rig = make_rig()
    for seq in range(1, 3):  # 2 x task_mismatch (-10 each) reach the -20 threshold
        rig.path.handle(envelope(alice, [group(seq, answer="lie")], seq=seq), "p")
    assert rig.path.admission.banned(alice.peer_id_text)
    assert rig.path.handle(envelope(alice, [group(50)], seq=10), "p") == 0
    assert rig.events.rejections["banned"] == 1
    assert rig.path.handle(envelope(bob, [group(51)], seq=1), "q") == 1
    rig.clock.advance(61)  # ban over
    assert not rig.path.admission.banned(alice.peer_id_text)
    assert rig.path.handle(envelope(alice, [group(52)], seq=11), "p") == 1


def test_garbage_relay_is_banned_by_transport_id(alice: Identity) -> None:
    rig = make_rig()
    for _ in range(5):  # 5 x malformed (-5 each) reaches -20 -> ban
        rig.path.handle(b"\x00garbage", "junk-relay")
    assert rig.path.admission.banned("junk-relay")
    assert rig.path.handle(envelope(alice, [group(1)]), "junk-relay") == 0
    assert rig.path.handle(envelope(alice, [group(1)]), "good-relay") == 1


def test_each_peer_reason_logged_once(alice: Identity, caplog: pytest.LogCaptureFixture) -> None:
    rig = make_rig()
    with caplog.at_level(logging.WARNING, logger="swarmrl.swarm.receive"):
        for _ in range(3):
            rig.path.handle(envelope(alice, [group(1)], swarm_id="other"), "p")
    assert sum("wrong_swarm" in r.getMessage() for r in caplog.records) == 1
    assert rig.events.rejections == {"wrong_swarm": 3}


def test_every_reason_is_in_the_fixed_set() -> None:
    assert {
        "oversized",
        "malformed",
        "wrong_swarm",
        "bad_signature",
        "replay",
        "rate_limited",
        "task_mismatch",
        "unverifiable_task",
        "unverifiable_dataset",
        "duplicate",
        "own_envelope",
        "over_budget",
        "banned",
        "not_allowed",
        "limits",
    } == wire.REASONS
