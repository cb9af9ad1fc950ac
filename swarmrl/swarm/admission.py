"""Who may talk to this node: the allowlist of a private swarm, and per-peer behaviour scores with bans.

Every rejection costs the responsible peer a penalty (see ``PENALTIES``); a peer whose score falls to the
ban threshold is banned for ``ban_seconds``, and while banned everything from it is dropped unread. Scores
recover slowly with time, up to 0, so an honest peer that once sent a bad message is not punished forever.
Peers are tracked in an LRU table, so a flood of fresh peer ids costs bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmrl.swarm.clock import Clock
from swarmrl.swarm.lru import LRU

#: Score lost per rejection, by reason. Forgery and lying about tasks cost most; things an honest but
#: misconfigured or bursty peer can cause cost little.
PENALTIES: dict[str, float] = {
    "oversized": 5.0,
    "malformed": 5.0,
    "limits": 5.0,
    "wrong_swarm": 1.0,
    "not_allowed": 0.0,
    "banned": 0.0,
    "bad_signature": 10.0,
    "replay": 2.0,
    "rate_limited": 1.0,
    "duplicate": 0.5,  # only when the same sender re-sends content (see receive.py)
    "own_envelope": 0.0,
    "over_budget": 0.0,  # bounded ingress: this node's own choice (docs/scale.md)
    "task_mismatch": 10.0,
    "unverifiable_task": 1.0,
    # An honest peer training on a file we do not hold: nothing to punish (it costs one cached lookup).
    "unverifiable_dataset": 0.0,
}


@dataclass(slots=True)
class PeerRecord:
    """Behaviour of one peer: ``score`` (<= 0), when it was last updated, and the end of any ban."""

    score: float = 0.0
    updated: float = 0.0
    banned_until: float = 0.0


@dataclass(frozen=True, slots=True)
class AdmissionSettings:
    allowlist: frozenset[str] = frozenset()
    ban_threshold: float = -20.0
    ban_seconds: float = 600.0
    recovery_per_minute: float = 1.0
    max_tracked_peers: int = 10_000


class Admission:
    """Allowlist + scores + bans for peer ids (base58 text)."""

    def __init__(self, settings: AdmissionSettings, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self._peers: LRU[str, PeerRecord] = LRU(settings.max_tracked_peers)

    def allowed(self, peer: str) -> bool:
        """True for everyone in a public swarm (empty allowlist), else only for listed peer ids."""
        return not self.settings.allowlist or peer in self.settings.allowlist

    def _record(self, peer: str) -> PeerRecord:
        now = self._clock.monotonic()
        rec = self._peers.get(peer)
        if rec is None:
            rec = PeerRecord(updated=now)
            self._peers.put(peer, rec)
            return rec
        if rec.score < 0:
            rec.score = min(0.0, rec.score + (now - rec.updated) / 60.0 * self.settings.recovery_per_minute)
        rec.updated = now
        return rec

    def banned(self, peer: str) -> bool:
        rec = self._peers.get(peer)
        return rec is not None and rec.banned_until > self._clock.monotonic()

    def penalize(self, peer: str, reason: str) -> bool:
        """Lower ``peer``'s score for ``reason``; return True if this penalty banned it."""
        penalty = PENALTIES.get(reason, 1.0)
        if not peer or penalty <= 0:
            return False
        rec = self._record(peer)
        rec.score -= penalty
        if rec.score <= self.settings.ban_threshold and rec.banned_until <= self._clock.monotonic():
            rec.banned_until = self._clock.monotonic() + self.settings.ban_seconds
            rec.score = 0.0  # a fresh start once the ban is over
            return True
        return False

    def score(self, peer: str) -> float:
        rec = self._peers.get(peer)
        return 0.0 if rec is None else self._record(peer).score

    def snapshot(self) -> dict[str, PeerRecord]:
        """Known peers and their records (for the control API); ``banned_until`` is on the monotonic clock."""
        return {
            peer: PeerRecord(rec.score, rec.updated, rec.banned_until) for peer, rec in self._peers.items()
        }
