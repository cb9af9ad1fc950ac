"""The receive path: every envelope from every transport is judged here, the same way.

Order (cheap and unauthenticated first, costly and authenticated last):

1. bans of the relaying peer (``via``) -> 2. per-link rate limit (every envelope a link hands us costs it
a token, before any parsing or signature work) -> 3. size (before any parsing) -> 4. envelope decode and
shape -> 5. swarm id -> 6. own envelope (the decoded sender is this node) -> 7. allowlist -> 8. bans of the
sender -> 8b. bounded ingress: the sender is one this node selected (``swarm.ingress_*``, see
``swarmrl.swarm.ingress``; else ``over_budget``, uncharged) -> 9. replay (timestamp window, then the sequence
window, checked without recording) -> 10. signature -> 11. the sequence number is recorded -> 12. per-sender
rate limit -> 12b. bounded ingress: the sender has quota left this round and the round has room (else
``over_budget``, uncharged) -> 13. payload decode with count/length limits (every string bounded before it
is stored or logged) -> 13b. the decoded groups are charged to the sender's quota (those beyond it are
dropped as ``over_budget``) -> 14. per-completion length budget of external groups (longer completions are
cut, see ``ReceiveSettings.max_external_completion_chars``)
-> 15. per-group duplicate check -> 16. task regeneration and comparison of question and answer (a row of
a data file this node does not hold, or holds with other contents, is ``unverifiable_dataset``; any other
task it cannot regenerate is ``unverifiable_task``; a regenerated task that differs is ``task_mismatch``).

Who pays (see docs/trust.md): a penalty goes only to a peer that provably caused the failure.

* Failures before the signature is checked are charged to the peer that handed us the bytes (``via``, the
  transport-authenticated link), never to the sender the bytes claim to come from, so nobody can get an
  honest peer banned by forging its id.
* A replayed sequence number is dropped before any signature work and counted. One extra copy of an envelope
  is normal gossip (libp2p delivers over direct push and the mesh; relays forward copies) and costs nobody
  anything; the signer's own link re-sending it after that is charged ``replay``. Copies relayed by other
  peers are never penalised; their cost is bounded by the per-link rate limit before any parsing.
* Failures after the signature verifies are the signed sender's.
* A group whose content this node already accepted from *another* sender is dropped and counted, and
  nobody is penalised: copying is not provable misbehaviour of either side (honest nodes that draw the
  same question can produce the same texts; an attacker can re-sign honest groups). Only the same sender
  sending the same content again is charged ``duplicate``.
* Our own envelopes handed back are dropped and counted (``own_envelope``), without a penalty.

Envelope-level failures drop the envelope; group-level failures (duplicate, task) drop only that group.
Nothing raises out of ``handle``.
"""

from __future__ import annotations

import hashlib
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from swarmrl.errors import DatasetUnavailableError, ProtocolError, SwarmRLError, TaskError
from swarmrl.protocol import envelope as wire
from swarmrl.protocol import peerid
from swarmrl.protocol.types import RolloutGroup, TaskRef
from swarmrl.swarm.admission import Admission
from swarmrl.swarm.clock import Clock
from swarmrl.swarm.events import SwarmEvents
from swarmrl.swarm.ingress import Ingress
from swarmrl.swarm.lru import LRU
from swarmrl.swarm.ratelimit import RateLimiter
from swarmrl.swarm.replay import ReplayGuard

log = logging.getLogger(__name__)


#: Regenerates (question, answer) from a TaskRef; raises swarmrl.errors.TaskError when it cannot.
class RegeneratedTask(Protocol):
    """What a task source gives back for a TaskRef (``swarmrl.tasks.Task`` is one)."""

    @property
    def question(self) -> str: ...

    @property
    def answer(self) -> str: ...


#: Our own task source for a peer's TaskRef: the task (or its question and answer); raises TaskError.
Regenerate = Callable[[TaskRef], "RegeneratedTask | tuple[str, str]"]
#: ``RolloutGroup.extras`` key of an accepted group's task as our own source regenerated it (so the node
#: scores the group against that task without looking it up again).
REGENERATED_TASK = "regenerated_task"
#: Receives the accepted groups of one envelope (already marked external, attributed to the sender).
GroupSink = Callable[[list[RolloutGroup]], None]

_TASK_CACHE = 4096
_LOGGED_CACHE = 4096


@dataclass(frozen=True, slots=True)
class ReceiveSettings:
    swarm_id: str
    limits: wire.Limits
    max_clock_skew_s: float = 300.0
    max_message_age_s: float = 900.0
    allow_unverified_tasks: bool = False
    duplicate_cache: int = 65_536
    #: This node's peer id (base58): envelopes it signed are dropped if they come back.
    own_id: str = ""
    #: External completions longer than this many characters are cut to it and marked unfinished (a
    #: cheap bound on the tokens the learner spends on one peer's completion); 0 = no cut.
    max_external_completion_chars: int = 0


#: Longest text of a task regeneration failure kept in the cache (and logged).
_MAX_REASON_CHARS = 200


def group_digest(group: RolloutGroup) -> bytes:
    """Content hash of a group (task, question, answer, completion texts): equal content, equal digest."""
    h = hashlib.sha256()
    for part in (group.task.key(), group.question, group.answer, *(c.text for c in group.completions)):
        data = part.encode("utf-8")
        h.update(struct.pack(">I", len(data)))
        h.update(data)
    return h.digest()


@dataclass(frozen=True, slots=True)
class _Refusal:
    """Internal: why a task could not be regenerated (cached per TaskRef like a regenerated task)."""

    reason: str
    message: str


class _Rejected(SwarmRLError):
    """Internal: an envelope-level rejection, charged to ``culprit``."""

    def __init__(self, error: ProtocolError, culprit: str) -> None:
        self.error = error
        self.culprit = culprit


class ReceivePath:
    """Validates envelopes and hands accepted groups to a sink. One instance per node."""

    def __init__(
        self,
        settings: ReceiveSettings,
        *,
        admission: Admission,
        rate: RateLimiter,
        replay: ReplayGuard,
        regenerate: Regenerate,
        events: SwarmEvents,
        sink: GroupSink,
        clock: Clock,
        link_rate: RateLimiter | None = None,
        ingress: Ingress | None = None,
    ) -> None:
        self.settings = settings
        self.admission = admission
        self.rate = rate
        self.replay = replay
        self.link_rate = link_rate
        self.ingress = ingress
        self._regenerate = regenerate
        self._events = events
        self._sink = sink
        self._clock = clock
        #: content digest -> the sender whose copy was accepted first
        self._seen: LRU[bytes, str] = LRU(settings.duplicate_cache)
        #: (sender, sequence) -> extra copies received (the first extra copy is free, see ``_open``)
        self._replays: LRU[tuple[str, int], int] = LRU(settings.duplicate_cache)
        self._tasks: LRU[str, RegeneratedTask | tuple[str, str] | _Refusal] = LRU(_TASK_CACHE)
        self._logged: LRU[tuple[str, str], bool] = LRU(_LOGGED_CACHE)

    # ------------------------------------------------------------------------------------------ public

    def handle(self, data: bytes, via: str = "") -> int:
        """Judge one envelope that ``via`` handed us; return the number of groups accepted. Never raises."""
        self._events.messages_received(1)
        try:
            sender, sent_ms, groups = self._open(data, via)
        except _Rejected as rej:
            self._reject(rej.error, rej.culprit)
            return 0
        except Exception:  # a bug must not take the receive path (or other peers' messages) down
            log.exception("unexpected error while validating an envelope from %s; dropped", via or "?")
            self._events.rejected("malformed")
            return 0
        accepted = [g for g in groups if self._admit_group(g, sender)]
        if accepted:
            delay = max(0.0, self._clock.wall() - sent_ms / 1000.0)
            self._events.accepted(len(accepted), delay)
            self._sink(accepted)
        return len(accepted)

    # ----------------------------------------------------------------------------------------- envelope

    def _open(self, data: bytes, via: str) -> tuple[str, int, list[RolloutGroup]]:
        s = self.settings
        if via and self.admission.banned(via):
            raise _Rejected(ProtocolError("banned", f"relaying peer {via} is banned"), via)
        if via and self.link_rate is not None and not self.link_rate.allow(via):
            raise _Rejected(ProtocolError("rate_limited", "above the per-link message rate"), via)
        try:
            env = wire.open_envelope(data, s.limits)
        except ProtocolError as exc:
            raise _Rejected(exc, via) from None
        if env.swarm_id != s.swarm_id:
            raise _Rejected(ProtocolError("wrong_swarm", f"swarm {env.swarm_id[:64]!r}"), via)
        sender = peerid.to_text(env.sender)
        if s.own_id and sender == s.own_id:
            raise _Rejected(ProtocolError("own_envelope", "an envelope this node signed came back"), "")
        if not self.admission.allowed(sender):
            raise _Rejected(ProtocolError("not_allowed", f"{sender} is not on the allowlist"), via)
        if self.admission.banned(sender):
            raise _Rejected(ProtocolError("banned", f"{sender} is banned"), sender)
        if self.ingress is not None and not self.ingress.selected(sender):
            raise _Rejected(ProtocolError("over_budget", "sender not selected by this node"), "")
        # Replays before any signature work: re-sent bytes cost one parse and a table lookup. Nothing is
        # recorded until the signature verifies (a forgery must not move an honest sender's window).
        age = self._clock.wall() - env.sent_unix_ms / 1000.0
        if age > s.max_message_age_s or -age > s.max_clock_skew_s:
            raise _Rejected(ProtocolError("replay", f"timestamp {age:.0f}s away from our clock"), "")
        if not self.replay.fresh(sender, env.seq):
            # One extra copy of an envelope is normal (libp2p delivers it over direct push and over the
            # gossip mesh, and a relay forwards what we already have): dropped and counted, no penalty,
            # its cost bounded by the link's rate limit above. Only the signer's own link sending the same
            # envelope again after that is charged.
            key = (sender, env.seq)
            copies = (self._replays.get(key) or 0) + 1
            self._replays.put(key, copies)
            culprit = via if via == sender and copies > 1 else ""
            raise _Rejected(ProtocolError("replay", f"sequence number {env.seq} already seen"), culprit)
        try:
            wire.verify_envelope(env)
        except ProtocolError as exc:
            raise _Rejected(exc, via) from None
        # authenticated from here on: failures are the sender's
        self.replay.check_and_record(sender, env.seq)
        if not self.rate.allow(sender):
            raise _Rejected(ProtocolError("rate_limited", "above the per-peer message rate"), sender)
        if self.ingress is not None and not self.ingress.admits(sender):
            raise _Rejected(ProtocolError("over_budget", "sender over its quota this round"), "")
        try:
            groups = wire.decode_batch(env.payload, sender, s.limits)
        except ProtocolError as exc:
            raise _Rejected(exc, sender) from None
        if self.ingress is not None:
            take = self.ingress.allowed_groups(sender, len(groups))
            if take < len(groups):
                self._events.rejected("over_budget", len(groups) - take)
                groups = groups[:take]
        cap = s.max_external_completion_chars
        if cap:
            for group in groups:
                for c in group.completions:
                    if len(c.text) > cap:
                        c.text = c.text[:cap]
                        c.finished = False
        return sender, env.sent_unix_ms, groups

    # -------------------------------------------------------------------------------------------- groups

    def _admit_group(self, group: RolloutGroup, sender: str) -> bool:
        digest = group_digest(group)
        first = self._seen.get(digest)
        if first is not None:
            if first == sender:  # the same sender sending the same content again: its own doing
                self._reject(ProtocolError("duplicate", f"group for {group.task.key()} sent again"), sender)
            else:  # a copy of someone else's content: not provable misbehaviour of either; drop, count
                self._events.rejected("duplicate")
            return False
        try:
            self._check_task(group)
        except ProtocolError as exc:
            self._reject(exc, sender)
            return False
        self._seen.put(digest, sender)
        return True

    def _check_task(self, group: RolloutGroup) -> None:
        key = group.task.key()
        known = self._tasks.get(key)
        if known is None:
            try:
                known = self._regenerate(group.task)
            except DatasetUnavailableError as exc:
                known = _Refusal(
                    "unverifiable_dataset", f"cannot regenerate {key}: {exc}"[:_MAX_REASON_CHARS]
                )
            except TaskError as exc:
                known = _Refusal(
                    "unverifiable_task", f"cannot regenerate {key}: {exc or 'unknown'}"[:_MAX_REASON_CHARS]
                )
            except Exception as exc:  # a task source bug is not the peer's fault; refuse, log, go on
                log.warning("task regeneration of %s failed unexpectedly: %.200r", key, exc)
                known = _Refusal(
                    "unverifiable_task", f"regeneration of {key} failed: {exc!r}"[:_MAX_REASON_CHARS]
                )
            self._tasks.put(key, known)
        if isinstance(known, _Refusal):
            if self.settings.allow_unverified_tasks:
                return
            raise ProtocolError(known.reason, known.message)
        question, answer = known if isinstance(known, tuple) else (known.question, known.answer)
        if group.question != question or group.answer != answer:
            raise ProtocolError("task_mismatch", f"question or answer differ from the regenerated {key}")
        if not isinstance(known, tuple):
            group.extras[REGENERATED_TASK] = known

    # ----------------------------------------------------------------------------------------- rejection

    def _reject(self, error: ProtocolError, culprit: str) -> None:
        reason = error.reason if error.reason in wire.REASONS else "malformed"
        self._events.rejected(reason)
        if reason == "over_budget":
            return  # this node's own choice, not anybody's fault: counted, never logged or charged
        just_banned = self.admission.penalize(culprit, reason) if culprit else False
        key = (culprit or "?", reason)
        if key not in self._logged:
            self._logged.put(key, True)
            log.warning(
                "rejected message from %s: %s (further '%s' from this peer are not logged)",
                culprit or "unknown peer",
                error,
                reason,
            )
        if just_banned:
            log.warning(
                "peer %s banned for %.0fs after repeated rejections",
                culprit,
                self.admission.settings.ban_seconds,
            )
