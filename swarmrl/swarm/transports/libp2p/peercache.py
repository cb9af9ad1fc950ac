"""The libp2p peer cache: known peers' multiaddrs kept on disk so a restart does not need bootstrap nodes.

The file is small JSON (``{"version": 1, "peers": [{"peer_id", "addrs", "last_seen"}]}``), rewritten
atomically (temporary file in the same directory, fsync, rename) so a crash never leaves a torn file.
A missing, unreadable or corrupt file is treated as empty: the cache is an optimisation, never a reason
for a node not to start.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from swarmrl.errors import InvalidValue

logger = logging.getLogger(__name__)

_VERSION = 1


@dataclass
class CachedPeer:
    """One remembered peer: its id, the full multiaddrs (ending in /p2p/<id>) and when it was last seen."""

    peer_id: str
    addrs: list[str]
    last_seen: float


@dataclass
class PeerCache:
    """Remembered peers, most recently seen first, at most ``capacity`` of them."""

    path: Path | None
    capacity: int = 64
    peers: dict[str, CachedPeer] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, capacity: int = 64) -> PeerCache:
        """Read the cache at ``path``; a missing or corrupt file gives an empty cache (logged)."""
        cache = cls(path=path, capacity=capacity)
        if path is None or not path.exists():
            return cache
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or raw.get("version") != _VERSION:
                raise InvalidValue(f"unsupported peer cache version {raw.get('version')!r}")
            for item in raw.get("peers", []):
                peer = CachedPeer(
                    peer_id=str(item["peer_id"]),
                    addrs=[str(a) for a in item["addrs"]],
                    last_seen=float(item["last_seen"]),
                )
                cache.peers[peer.peer_id] = peer
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable libp2p peer cache %s (%s); it will be rewritten", path, exc)
            cache.peers.clear()
        cache._trim()
        return cache

    def remember(self, peer_id: str, addrs: list[str], now: float | None = None) -> bool:
        """Record that ``peer_id`` is reachable at ``addrs``. Returns True when the address set changed."""
        if not addrs:
            return False
        seen = time.time() if now is None else now
        old = self.peers.get(peer_id)
        changed = old is None or sorted(old.addrs) != sorted(addrs)
        self.peers[peer_id] = CachedPeer(peer_id=peer_id, addrs=list(addrs), last_seen=seen)
        self._trim()
        return changed

    def addrs(self) -> list[str]:
        """Every remembered multiaddr, most recently seen peers first."""
        ordered = sorted(self.peers.values(), key=lambda p: p.last_seen, reverse=True)
        return [addr for peer in ordered for addr in peer.addrs]

    def save(self) -> None:
        """Write the cache atomically (no-op without a path). Errors are logged, not raised."""
        if self.path is None:
            return
        ordered = sorted(self.peers.values(), key=lambda p: p.last_seen, reverse=True)
        body = {
            "version": _VERSION,
            "peers": [{"peer_id": p.peer_id, "addrs": p.addrs, "last_seen": p.last_seen} for p in ordered],
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".peers-", suffix=".tmp", dir=self.path.parent)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(body, fh, indent=1)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            logger.warning("cannot write libp2p peer cache %s: %s", self.path, exc)

    def _trim(self) -> None:
        if len(self.peers) <= self.capacity:
            return
        keep = sorted(self.peers.values(), key=lambda p: p.last_seen, reverse=True)[: self.capacity]
        self.peers = {p.peer_id: p for p in keep}
