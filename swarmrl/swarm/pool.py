"""The pool of accepted external rollout groups waiting to be sampled.

Bounded three ways: at most ``max_groups`` groups in total (the oldest is dropped first), at most
``per_peer_share`` of that for any one peer (the peer's own oldest group makes room), and groups received
more than ``max_age_rounds`` local rounds ago are dropped (old policies' samples lose value quickly).
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

from swarmrl.errors import InvalidValue
from swarmrl.protocol.types import RolloutGroup


@dataclass(slots=True)
class PoolEntry:
    """One external group, the peer that sent it and the local round in which it arrived."""

    group: RolloutGroup
    peer: str
    received_round: int


class RolloutPool:
    """Arrival-ordered, capped store of external groups.

    Thread-safe: the receive path adds groups on the event loop while the node samples from a worker thread
    (where the local re-scoring runs), so every operation holds one lock.
    """

    def __init__(self, max_groups: int, per_peer_share: float, max_age_rounds: int) -> None:
        if max_groups < 1 or not 0 < per_peer_share <= 1 or max_age_rounds < 1:
            raise InvalidValue("pool needs max_groups >= 1, 0 < per_peer_share <= 1, max_age_rounds >= 1")
        self.max_groups = max_groups
        self.per_peer_cap = max(1, math.floor(per_peer_share * max_groups))
        self.max_age_rounds = max_age_rounds
        self._entries: OrderedDict[int, PoolEntry] = OrderedDict()
        self._by_peer: dict[str, deque[int]] = {}
        self._next_id = 0
        self.evicted = 0
        self._lock = threading.RLock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def add(self, groups: list[RolloutGroup], round_: int) -> None:
        """Add groups received in local round ``round_`` (their ``peer`` field names the sender)."""
        with self._lock:
            for group in groups:
                ids = self._by_peer.setdefault(group.peer, deque())
                if len(ids) >= self.per_peer_cap:
                    self._remove(ids[0])
                elif len(self._entries) >= self.max_groups:
                    self._remove(next(iter(self._entries)))
                entry_id = self._next_id
                self._next_id += 1
                self._entries[entry_id] = PoolEntry(group, group.peer, round_)
                self._by_peer.setdefault(group.peer, deque()).append(entry_id)

    def prune(self, round_: int) -> int:
        """Drop groups older than ``max_age_rounds`` at local round ``round_``; return how many."""
        with self._lock:
            stale = [i for i, e in self._entries.items() if round_ - e.received_round > self.max_age_rounds]
            for entry_id in stale:
                self._remove(entry_id)
            return len(stale)

    def entries(self) -> list[tuple[int, PoolEntry]]:
        """(id, entry) pairs, oldest first."""
        with self._lock:
            return list(self._entries.items())

    def take(self, ids: list[int]) -> list[PoolEntry]:
        """Remove and return the entries with these ids (unknown ids are skipped)."""
        with self._lock:
            out = []
            for entry_id in ids:
                entry = self._entries.get(entry_id)
                if entry is not None:
                    self._remove(entry_id)
                    self.evicted -= 1  # taken for training, not evicted
                    out.append(entry)
            return out

    def discard(self, ids: list[int]) -> None:
        """Remove entries that turned out useless (e.g. zero advantage under the local rewards)."""
        with self._lock:
            for entry_id in ids:
                if entry_id in self._entries:
                    self._remove(entry_id)

    def peer_counts(self) -> dict[str, int]:
        with self._lock:
            return {peer: len(ids) for peer, ids in self._by_peer.items() if ids}

    def _remove(self, entry_id: int) -> None:
        entry = self._entries.pop(entry_id)
        ids = self._by_peer.get(entry.peer)
        if ids is not None:
            ids.remove(entry_id)
            if not ids:
                del self._by_peer[entry.peer]
        self.evicted += 1
