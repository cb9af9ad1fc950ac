"""Dialling known peers (bootstrap, peer cache, mDNS) with per-peer exponential backoff, and two peer helpers
(closing a refused peer's connection, a peer's dialable addresses)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import multiaddr
import trio
from libp2p.abc import IHost
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo

from swarmrl.swarm.transports.libp2p.peercache import PeerCache
from swarmrl.swarm.transports.libp2p.settings import StackConfig, StackCounters

logger = logging.getLogger("swarmrl.swarm.transports.libp2p.stack")


@dataclass
class Backoff:
    failures: int = 0
    next_try: float = 0.0


class Dialer:
    """Dials bootstrap, cached (and with mDNS, discovered) peers that are not connected."""

    def __init__(
        self,
        config: StackConfig,
        cache: PeerCache,
        my_id: ID,
        admits: Callable[[str], bool],
        connect: Callable[[PeerInfo], Awaitable[None]],
        counters: StackCounters,
    ) -> None:
        self._config = config
        self._cache = cache
        self._my_id = my_id
        self._admits = admits
        self._connect = connect
        self._counters = counters
        self._backoff: dict[str, Backoff] = {}

    async def run(self, host: IHost, first_round: trio.Event) -> None:
        """Dial bootstrap and cached peers that are not connected, with per-peer exponential backoff."""
        while True:
            targets = self.targets(host)
            if targets:
                async with trio.open_nursery() as nursery:
                    for peer_id, addrs in targets.items():
                        nursery.start_soon(self.dial_one, host, peer_id, addrs, first_round)
            first_round.set()
            await trio.sleep(self._config.redial_s)

    def targets(self, host: IHost) -> dict[ID, list[multiaddr.Multiaddr]]:
        """Bootstrap peers that are not connected, and, while this node has fewer than ``max_peers``
        connections, cached (and mDNS) peers up to that many: the dialler (re)joins the swarm; filling
        and rotating connections is peer exchange's and bounded ingress's (``push``)."""
        connected = set(host.get_connected_peers())
        now = time.monotonic()
        room = self._config.max_peers - len(connected)
        texts = list(self._config.bootstrap)
        boot = len(texts)
        texts += self._cache.addrs() if room > 0 else []
        targets: dict[ID, list[multiaddr.Multiaddr]] = {}
        for index, text in enumerate(texts):
            try:
                ma = multiaddr.Multiaddr(text)
                pid_text = ma.get_peer_id()
                if pid_text is None:
                    continue
                peer_id = ID.from_base58(pid_text)
                bare = ma.decapsulate(multiaddr.Multiaddr(f"/p2p/{pid_text}"))
            except Exception:
                logger.debug("skipping undialable address %s", text)
                continue
            if peer_id == self._my_id or peer_id in connected or not self._admits(pid_text):
                continue
            if self._backoff.get(pid_text, Backoff()).next_try > now:
                continue
            if index >= boot and peer_id not in targets:
                if room <= 0:
                    continue
                room -= 1
            targets.setdefault(peer_id, []).append(bare)
        if self._config.mdns:
            store = host.get_peerstore()
            for peer_id in store.peers_with_addrs():
                if peer_id == self._my_id or peer_id in connected or peer_id in targets:
                    continue
                if self._backoff.get(peer_id.to_base58(), Backoff()).next_try > now or room <= 0:
                    continue
                room -= 1
                targets[peer_id] = list(store.addrs(peer_id))
        return targets

    async def dial_one(
        self, host: IHost, peer_id: ID, addrs: list[multiaddr.Multiaddr], first_round: trio.Event
    ) -> None:
        key = peer_id.to_base58()
        ok = False
        with trio.move_on_after(self._config.connect_timeout_s):
            try:
                await self._connect(PeerInfo(peer_id, addrs))
                ok = True
            except Exception as exc:
                logger.debug("dial %s failed: %r", key, exc)
        if ok:
            self._backoff.pop(key, None)
            first_round.set()
            return
        self._counters.dial_failures += 1
        state = self._backoff.setdefault(key, Backoff())
        state.failures += 1
        delay = min(300.0, self._config.redial_s * 2 ** min(state.failures - 1, 10))
        state.next_try = time.monotonic() + delay


async def refuse(host: IHost, peer: ID) -> None:
    """Close the connection of a peer the allowlist refuses (pubsub already ignores it)."""
    logger.debug("closing the connection of %s: not on the allowlist", peer)
    with trio.move_on_after(2.0):
        try:
            await host.disconnect(peer)
        except Exception as exc:
            logger.debug("disconnecting %s raised %r", peer, exc)


def peer_addrs(store: object, peer: ID) -> list[str]:
    try:
        raw = store.addrs(peer)  # type: ignore[attr-defined]
    except Exception:
        return []
    suffix = f"/p2p/{peer.to_base58()}"
    out: list[str] = []
    for addr in raw:
        text = str(addr)
        if "/tcp/" not in text:
            continue
        if "/p2p/" not in text:
            text += suffix
        elif not text.endswith(suffix):
            continue  # a relay or someone else's address
        if text not in out:
            out.append(text)
    return out
