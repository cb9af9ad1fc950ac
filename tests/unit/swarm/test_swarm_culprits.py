"""Round two of the receive path: penalties only for a provable culprit, own envelopes, replays before
signature work, per-link rate, string limits, the external completion budget, the libp2p handshake gate and
the fd budget."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys

import pytest
import trio
from swarm_helpers import envelope, group, regenerate

from swarmrl.protocol import envelope as wire
from swarmrl.protocol import swarm_pb2
from swarmrl.swarm.admission import Admission, AdmissionSettings
from swarmrl.swarm.clock import ManualClock
from swarmrl.swarm.events import CountingEvents
from swarmrl.swarm.fdlimit import FD_RESERVE
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.ratelimit import RateLimiter
from swarmrl.swarm.receive import ReceivePath, ReceiveSettings
from swarmrl.swarm.replay import ReplayGuard
from swarmrl.swarm.transports.libp2p.hardened import HandshakeGate, demote_remote_errors

SWARM = "test-swarm"


def make_path(
    *, own_id: str = "", cut: int = 0, link_rate: float | None = None, limits: wire.Limits | None = None
) -> tuple[ReceivePath, CountingEvents, list[object]]:
    clock = ManualClock()
    events = CountingEvents()
    accepted: list[object] = []
    path = ReceivePath(
        ReceiveSettings(
            swarm_id=SWARM, limits=limits or wire.Limits(), own_id=own_id, max_external_completion_chars=cut
        ),
        admission=Admission(AdmissionSettings(ban_threshold=-20, ban_seconds=60), clock),
        rate=RateLimiter(1000.0, 1000, clock),
        replay=ReplayGuard(window=0),
        regenerate=regenerate,
        events=events,
        sink=accepted.extend,
        clock=clock,
        link_rate=RateLimiter(link_rate, 5, clock) if link_rate else None,
    )
    return path, events, accepted


def test_a_copy_from_another_sender_penalises_nobody() -> None:
    honest, copier = Identity.generate(), Identity.generate()
    path, events, _ = make_path()
    groups = [group(i) for i in range(60)]
    assert path.handle(envelope(copier, groups, seq=1), copier.peer_id_text) == 60
    assert path.handle(envelope(honest, groups, seq=1), honest.peer_id_text) == 0
    assert events.rejections == {"duplicate": 60}
    assert path.admission.score(honest.peer_id_text) == 0.0 and not path.admission.banned(honest.peer_id_text)
    assert path.handle(envelope(honest, [group(99)], seq=2), honest.peer_id_text) == 1


def test_the_same_sender_resending_content_pays() -> None:
    alice = Identity.generate()
    path, _, _ = make_path()
    assert path.handle(envelope(alice, [group(1)], seq=1), "p") == 1
    assert path.handle(envelope(alice, [group(1)], seq=2), "p") == 0
    assert path.admission.score(alice.peer_id_text) < 0


def test_own_envelope_is_dropped_even_re_encoded() -> None:
    me = Identity.generate()
    path, events, accepted = make_path(own_id=me.peer_id_text)
    data = envelope(me, [group(1)], seq=1)
    assert path.handle(data, "relay") == 0
    assert path.handle(data + b"\x78\x01", "relay") == 0  # unknown field: same signed fields, new bytes
    assert events.rejections == {"own_envelope": 2} and not accepted
    assert path.admission.score("relay") == 0.0


def test_replays_are_charged_to_the_link_before_signature_work(monkeypatch: pytest.MonkeyPatch) -> None:
    alice = Identity.generate()
    path, events, _ = make_path()
    data = envelope(alice, [group(1)], seq=5)
    assert path.handle(data, alice.peer_id_text) == 1
    verified = []
    real = wire.verify_envelope
    monkeypatch.setattr(wire, "verify_envelope", lambda env: verified.append(1) or real(env))
    for _ in range(12):
        path.handle(data, alice.peer_id_text)  # its own signer replaying over its own link
    assert verified == []  # never verified again
    assert path.admission.banned(alice.peer_id_text)
    # the first extra copy is free (normal gossip), then 10 charged replays reach the ban threshold
    assert events.rejections["replay"] == 11 and events.rejections["banned"] == 1


def test_a_forged_high_sequence_does_not_move_the_window() -> None:
    alice = Identity.generate()
    path, _, _ = make_path()
    env = swarm_pb2.Envelope()
    env.ParseFromString(envelope(alice, [group(1)], seq=1_000))
    env.signature = bytes(64)
    assert path.handle(env.SerializeToString(), "forger") == 0
    assert path.handle(envelope(alice, [group(2)], seq=10), "p") == 1


def test_link_rate_limit_comes_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    alice = Identity.generate()
    path, events, _ = make_path(link_rate=1.0)
    datas = [envelope(alice, [group(i)], seq=i + 1) for i in range(8)]
    opened = []
    real = wire.open_envelope
    monkeypatch.setattr(wire, "open_envelope", lambda d, lim: opened.append(1) or real(d, lim))
    assert [path.handle(d, "relay") for d in datas] == [1] * 5 + [0] * 3
    assert len(opened) == 5 and events.rejections == {"rate_limited": 3}
    assert path.admission.score("relay") < 0 and path.admission.score(alice.peer_id_text) == 0.0


def test_string_limits_on_task_refs_and_metadata() -> None:
    alice = Identity.generate()
    path, events, _ = make_path(limits=wire.Limits(max_ref_chars=16, max_meta_chars=16))
    g = group(1)
    g.task = dataclasses.replace(g.task, source="s" * 17)
    m = group(2)
    m.policy = dataclasses.replace(m.policy, node="n" * 17)
    assert path.handle(envelope(alice, [g], seq=1), "p") == 0
    assert path.handle(envelope(alice, [m], seq=2), "p") == 0
    assert events.rejections == {"limits": 2}


def test_external_completions_are_cut_at_intake() -> None:
    alice = Identity.generate()
    path, _, accepted = make_path(cut=10)
    assert path.handle(envelope(alice, [group(1, texts=["1" * 50, "22"])], seq=1), "p") == 1
    (got,) = accepted
    assert [c.text for c in got.completions] == ["1" * 10, "22"]  # type: ignore[attr-defined]
    assert [c.finished for c in got.completions] == [False, True]  # type: ignore[attr-defined]


def test_handshake_gate_evicts_the_oldest_stalled_handshake_only() -> None:
    async def main() -> None:
        gate = HandshakeGate(limit=2, timeout_s=30.0, min_age_s=0.2)
        outcomes: list[str] = []

        async def stall(_raw: object, _addr: object) -> str:
            await trio.sleep(60)
            return "never"

        async def quick(_raw: object, _addr: object) -> str:
            await trio.sleep(0.01)
            return "done"

        async def attempt(inner: object) -> None:
            try:
                outcomes.append(await gate.run(inner, None, None))  # type: ignore[arg-type]
            except Exception as exc:
                outcomes.append(type(exc).__name__)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(attempt, stall)
            nursery.start_soon(attempt, stall)
            await trio.sleep(0.05)
            nursery.start_soon(attempt, quick)  # both stalled ones are young: refused
            await trio.sleep(0.3)
            nursery.start_soon(attempt, quick)  # now the oldest stalled one is evicted
            await trio.sleep(0.1)
            nursery.cancel_scope.cancel()
        assert outcomes[:3] == ["SwarmException", "SwarmException", "done"]
        assert gate.evicted == 1 and gate.refused == 1

    trio.run(main)


def test_connection_budget_stays_well_below_the_fd_limit() -> None:
    # in a child: lowering the hard limit cannot be undone
    code = (
        "import resource\n"
        "from swarmrl.swarm.fdlimit import connection_budget\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))\n"
        "print(connection_budget(100, 'x'), connection_budget(5000, 'x'))\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (300, 1024))\n"
        "print(connection_budget(100, 'x'), resource.getrlimit(resource.RLIMIT_NOFILE)[0])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["100", str(min(512, 1024 - FD_RESERVE)), "100", str(100 + FD_RESERVE)]


def test_libp2p_per_connection_errors_are_logged_as_warnings(caplog: pytest.LogCaptureFixture) -> None:
    demote_remote_errors()
    demote_remote_errors()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("libp2p.network.swarm").error("fail to upgrade mux for peer %s", "x")
    (record,) = [r for r in caplog.records if r.name == "libp2p.network.swarm"]
    assert record.levelname == "WARNING"
    assert len(logging.getLogger("libp2p.network.swarm").filters) == 1
