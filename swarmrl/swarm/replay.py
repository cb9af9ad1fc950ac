"""Replay protection: per sender, sequence numbers must increase, within a small out-of-order window.

Gossip can deliver a sender's envelopes out of order, so besides "higher than any seen" a sequence number
up to ``window`` behind the highest is accepted once (a sliding bitmap, as in IPsec anti-replay). With
``window=0`` sequence numbers must be strictly increasing. The state survives restarts through
``save``/``load`` (a small JSON file written atomically); senders forgotten by the LRU bound fall back on
the timestamp window the receive path enforces.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from swarmrl.swarm.lru import LRU


class ReplayGuard:
    """Per-sender highest sequence number and a bitmap of the ``window`` numbers below it."""

    def __init__(self, window: int = 64, max_senders: int = 10_000) -> None:
        self.window = window
        self._mask_all = (1 << (window + 1)) - 1
        self._state: LRU[str, tuple[int, int]] = LRU(max_senders)

    def fresh(self, sender: str, seq: int) -> bool:
        """True if ``seq`` would be accepted for ``sender``; records nothing (so a forged envelope checked
        before its signature cannot move an honest sender's window)."""
        state = self._state.get(sender)
        if state is None:
            return True
        highest, mask = state
        if seq > highest:
            return True
        behind = highest - seq
        return behind <= self.window and not (mask >> behind) & 1

    def check_and_record(self, sender: str, seq: int) -> bool:
        """True (and remembered) the first time ``seq`` is seen in the window; False for a replay."""
        state = self._state.get(sender)
        if state is None:
            self._state.put(sender, (seq, 1))
            return True
        highest, mask = state
        if seq > highest:
            shift = seq - highest
            mask = ((mask << shift) | 1) & self._mask_all if shift <= self.window else 1
            self._state.put(sender, (seq, mask))
            return True
        behind = highest - seq
        if behind > self.window or (mask >> behind) & 1:
            return False
        self._state.put(sender, (highest, mask | (1 << behind)))
        return True

    def save(self, path: Path) -> None:
        """Write the state atomically (tmp file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        data = {"window": self.window, "senders": {s: [h, m] for s, (h, m) in self._state.items()}}
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)

    def load(self, path: Path) -> int:
        """Merge state saved by ``save``; return how many senders were read. A corrupt file is ignored
        (returns 0): replays are then still bounded by the receive path's timestamp window."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            senders = data["senders"]
            entries = [(str(s), int(v[0]), int(v[1])) for s, v in senders.items()]
        except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return 0
        for sender, highest, mask in entries:
            self._state.put(sender, (highest, mask & self._mask_all))
        return len(entries)
