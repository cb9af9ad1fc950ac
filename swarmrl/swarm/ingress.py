"""Bounded ingress: a node takes in at most its own budget of external groups per round, whatever N is.

Mechanism (receiver-chosen senders; see docs/scale.md for the derivation of the bound): every
``rotate_rounds`` rounds a node draws ``K = senders`` members uniformly at random, without replacement, from
the swarm members its transport knows of, and tells its transport to *select* them. The transport asks those
senders (and only those) for their envelopes; a sender pushes its own envelopes only to the nodes that
selected it (and to old nodes that never select, which take everything as before). So a node receives the
envelopes of K senders per round instead of N - 1.

The receive path enforces the same choice: before any signature work, an envelope whose signed sender is not
in the current or previous selection is dropped uncharged (reason ``over_budget``, ``Ingress.selected``);
after the signature and the per-sender rate limit (so a flooder is still charged ``rate_limited`` as
before), an envelope whose sender has used its quota of ``ceil(groups_per_round / senders taken from)``
groups this round, or that finds the round's budget spent, is dropped uncharged too (``Ingress.admits``), and
the groups of the last envelope that fits are cut to the quota (``Ingress.allowed_groups``). Quotas are
charged only after the signature verified, so a forger cannot use up an honest sender's quota. Every other
trust check is unchanged.

Small swarms keep working exactly as today: while the transport knows ``K`` members or fewer, the selection
is "everyone" (``None``), the transport asks nothing of anyone, and the budget is split among the members
known at the last draw (with the defaults, B = 32 and K = 8, that is 4 groups or more per sender per round:
today's ``publish_groups``).
``groups_per_round = 0`` turns the mechanism off (the old behaviour, every envelope to every node).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class IngressSettings:
    #: External groups taken in per round at most (0 = unbounded, the old behaviour).
    groups_per_round: int = 32
    #: Senders chosen at a time (K).
    senders: int = 8
    #: The selection is drawn afresh every this many rounds.
    rotate_rounds: int = 1
    #: Of the K, at most this many are drawn from members the transport is not connected to (see rotate).
    explore: int = 2


@dataclass
class IngressCounters:
    """Running totals (for benchmarks, the simulator and the control API)."""

    rotations: int = 0
    dropped_not_selected: int = 0
    dropped_over_quota: int = 0
    #: How often each sender was selected (LRU-free: bounded by the members this node ever knew; cleared
    #: by ``Ingress.reset_fairness``).
    picks: dict[str, int] = field(default_factory=dict)


class Ingress:
    """The selection of senders and the per-round quota of one node."""

    def __init__(self, settings: IngressSettings, rng: random.Random, max_tracked: int = 4096) -> None:
        self.settings = settings
        self._rng = rng
        self._max_tracked = max_tracked
        self.selection: frozenset[str] | None = None  # None = everyone
        self._previous: frozenset[str] | None = None
        self._last_rotation: int | None = None
        self._round = 0
        self._used: dict[str, int] = {}
        self._total = 0
        self._known = 0
        self.counters = IngressCounters()

    @property
    def enabled(self) -> bool:
        return self.settings.groups_per_round > 0

    @property
    def bounding(self) -> bool:
        """True while a selection is in force (the swarm has more than K members this node knows of)."""
        return self.enabled and self.selection is not None

    def quota(self) -> int:
        """Groups one selected sender may bring per round: the budget split among the selected senders."""
        share = len(self.selection) if self.selection else min(self.settings.senders, self._known)
        return max(1, math.ceil(self.settings.groups_per_round / max(1, share)))

    def rotate(self, round_: int, members: Iterable[str], far: Iterable[str] = ()) -> bool:
        """Draw a new selection if one is due at ``round_`` (or the swarm grew past K, or chosen senders
        left); True when it changed (then tell the transport).

        ``members`` are the senders the transport can ask now (connected); ``far`` are members it knows of
        but is not connected to (learned from peers), which it dials once selected. A draw takes up to
        ``explore`` senders from ``far`` and the rest from ``members``, so the senders of a node with a
        connection cap still range over the whole swarm, while a peer that lists made-up members can waste
        at most ``explore`` of the K slots (its fakes fail to dial and drop out of ``far``)."""
        if not self.enabled:
            return False
        known = set(members)
        remote = set(far) - known
        self._known = len(known) + len(remote)
        k = self.settings.senders
        if self._known <= k:
            new: frozenset[str] | None = None
        else:
            due = self._last_rotation is None or round_ - self._last_rotation >= self.settings.rotate_rounds
            if not due and self.selection is not None and self.selection <= known | remote:
                return False
            n_far = min(len(remote), max(self.settings.explore, k - len(known)))
            n_near = min(len(known), k - n_far)
            new = frozenset(self._rng.sample(sorted(known), n_near) + self._rng.sample(sorted(remote), n_far))
            self.counters.rotations += 1
            for peer in new:
                if peer in self.counters.picks or len(self.counters.picks) < self._max_tracked:
                    self.counters.picks[peer] = self.counters.picks.get(peer, 0) + 1
        if new == self.selection:
            return False
        self._last_rotation = round_
        self._previous, self.selection = self.selection, new
        return True

    def start_round(self, round_: int) -> None:
        """Round ``round_``'s window opens (the swarm calls it at the end of the previous round, when it
        samples, and again, without effect, when it publishes): quotas start afresh; the previous selection
        stops being admitted one round after the rotation (its envelopes on their way have arrived)."""
        if round_ > self._round:
            self._round = round_
            self._used.clear()
            self._total = 0
            if self._last_rotation is not None and round_ > self._last_rotation + 1:
                self._previous = self.selection

    def selected(self, sender: str) -> bool:
        """Before the signature check: is this a sender this node chose (or chose last round)?"""
        if not self.enabled:
            return True
        sel, prev = self.selection, self._previous
        if sel is not None and sender not in sel and prev is not None and sender not in prev:
            self.counters.dropped_not_selected += 1
            return False
        return True

    def admits(self, sender: str) -> bool:
        """After the signature and rate checks: has the sender quota left, and the round room?"""
        if not self.enabled:
            return True
        if self._total >= self.settings.groups_per_round or self._used.get(sender, 0) >= self.quota():
            self.counters.dropped_over_quota += 1
            return False
        return True

    def allowed_groups(self, sender: str, groups: int) -> int:
        """After the signature check: how many of ``groups`` fit in the sender's quota and the round's
        budget; charges them."""
        if not self.enabled:
            return groups
        used = self._used.get(sender, 0)
        room = min(self.quota() - used, self.settings.groups_per_round - self._total)
        take = max(0, min(groups, room))
        if len(self._used) < self._max_tracked or sender in self._used:
            self._used[sender] = used + take
        self._total += take
        if take < groups:
            self.counters.dropped_over_quota += groups - take
        return take
