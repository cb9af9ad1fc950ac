"""``Swarm``: the one object the node uses to share rollouts (``transports.factory.build_transport`` picks its transport).

The node calls, each round: ``publish(own_groups, round)``, then ``sample(J, round, rescore)`` for the
external groups to train on, then ``observe_round(...)`` with its own reward evidence (the ``adaptive``
strategy needs it). Everything received in between is validated by the receive path and pooled.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path

from swarmrl.config import NodeConfig
from swarmrl.errors import ProtocolError, TransportError
from swarmrl.protocol import envelope as wire
from swarmrl.protocol.types import RolloutGroup
from swarmrl.swarm.admission import Admission, AdmissionSettings, PeerRecord
from swarmrl.swarm.clock import Clock, SystemClock
from swarmrl.swarm.events import SwarmEvents
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.ingress import Ingress, IngressSettings
from swarmrl.swarm.lru import LRU
from swarmrl.swarm.pool import PoolEntry, RolloutPool
from swarmrl.swarm.ratelimit import RateLimiter
from swarmrl.swarm.receive import ReceivePath, ReceiveSettings, Regenerate
from swarmrl.swarm.replay import ReplayGuard
from swarmrl.swarm.sampler import AdaptiveController, AdaptiveSettings, Rescore, Sampler
from swarmrl.swarm.transports.base import PeerState, Transport

log = logging.getLogger(__name__)

_SAVE_REPLAY_EVERY_ROUNDS = 10


def limits_from_config(cfg: NodeConfig) -> wire.Limits:
    lim = cfg.swarm.limits
    return wire.Limits(
        max_envelope_bytes=lim.max_envelope_bytes,
        max_groups_per_batch=lim.max_groups_per_batch,
        max_completions_per_group=lim.max_completions_per_group,
        max_completion_chars=lim.max_completion_chars,
        max_question_chars=lim.max_question_chars,
        max_ref_chars=lim.max_ref_chars,
        max_meta_chars=lim.max_meta_chars,
    )


#: ``swarm.limits.max_external_completion_chars: 0`` means this many characters per generated token.
EXTERNAL_CHARS_PER_TOKEN = 8
_MIN_EXTERNAL_CHARS = 256


def external_completion_chars(cfg: NodeConfig) -> int:
    """The per-completion character budget of external groups (see the config field)."""
    configured = cfg.swarm.limits.max_external_completion_chars
    if configured:
        return configured
    return max(_MIN_EXTERNAL_CHARS, EXTERNAL_CHARS_PER_TOKEN * cfg.generation.max_new_tokens)


def _under(data_dir: Path | None, relative: str) -> Path | None:
    if not relative or data_dir is None:
        return None
    return data_dir / relative


class Swarm:
    """Publishes own groups, validates and pools peers' groups, and samples external groups to train on."""

    def __init__(
        self,
        cfg: NodeConfig,
        identity: Identity,
        transport: Transport,
        regenerate: Regenerate,
        events: SwarmEvents,
        *,
        data_dir: Path | None = None,
        clock: Clock | None = None,
    ) -> None:
        sw, adm = cfg.swarm, cfg.swarm.admission
        self.cfg = cfg
        self.identity = identity
        self.transport = transport
        self.events = events
        self.limits = limits_from_config(cfg)
        self._clock: Clock = clock or SystemClock()
        self.admission = Admission(
            AdmissionSettings(
                allowlist=frozenset(adm.allowlist),
                ban_threshold=adm.ban_threshold,
                ban_seconds=adm.ban_seconds,
                recovery_per_minute=adm.score_recovery_per_minute,
                max_tracked_peers=adm.max_tracked_peers,
            ),
            self._clock,
        )
        self.replay = ReplayGuard(adm.replay_window, adm.max_tracked_peers)
        self._replay_path = _under(data_dir, adm.replay_state_file)
        if self._replay_path is not None and self._replay_path.exists():
            self.replay.load(self._replay_path)
        self.pool = RolloutPool(sw.pool.max_groups, sw.pool.per_peer_share, sw.pool.max_age_rounds)
        self._accepted: LRU[str, int] = LRU(adm.max_tracked_peers)
        s = cfg.sampling
        self.sampler = Sampler(
            s.strategy,
            random.Random(cfg.node.seed),
            s.rescore_factor,
            AdaptiveController(
                AdaptiveSettings(
                    s.adaptive.window,
                    s.adaptive.min_evidence,
                    s.adaptive.harm_margin,
                    s.adaptive.probe_every,
                    s.adaptive.confidence_z,
                )
            ),
        )
        self.ingress = Ingress(
            IngressSettings(
                sw.ingress_groups_per_round, sw.ingress_senders, sw.ingress_rotate_rounds, sw.ingress_explore
            ),
            random.Random(f"ingress:{cfg.node.seed}:{identity.peer_id_text}"),
            adm.max_tracked_peers,
        )
        #: Envelopes and bytes handed to the receive path since start (before any check), and the thread CPU
        #: seconds the receive path spent on them.
        self.received_envelopes = 0
        self.received_bytes = 0
        self.receive_cpu_s = 0.0
        self.receiver = ReceivePath(
            ReceiveSettings(
                swarm_id=sw.swarm_id,
                limits=self.limits,
                max_clock_skew_s=sw.limits.max_clock_skew_s,
                max_message_age_s=sw.limits.max_message_age_s,
                allow_unverified_tasks=adm.allow_unverified_tasks,
                duplicate_cache=adm.duplicate_cache,
                own_id=identity.peer_id_text,
                max_external_completion_chars=external_completion_chars(cfg),
            ),
            admission=self.admission,
            rate=RateLimiter(sw.rate.messages_per_second, sw.rate.burst, self._clock, adm.max_tracked_peers),
            replay=self.replay,
            regenerate=regenerate,
            events=events,
            sink=self._pool_groups,
            clock=self._clock,
            link_rate=RateLimiter(
                sw.rate.link_messages_per_second, sw.rate.link_burst, self._clock, adm.max_tracked_peers
            ),
            ingress=self.ingress if self.ingress.enabled else None,
        )
        self._publish_pace = RateLimiter(sw.max_publish_per_second, 1, self._clock, 1)
        self._seq = 0
        self._round = 0
        self._transport_down = False
        self._last_saved_round = 0
        transport.set_peer_filter(self._admits)
        transport.subscribe(self._on_envelope)

    # ---------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Start the transport (bind, dial, join)."""
        await self.transport.start()
        self.events.peers_connected(len(self.transport.peers()))
        self.rotate_ingress()
        log.info(
            "swarm %s: peer %s on %s",
            self.cfg.swarm.swarm_id,
            self.identity.peer_id_text,
            ", ".join(self.transport.listen_addrs()) or "-",
        )

    async def close(self) -> None:
        """Leave the swarm and persist the replay state. Idempotent."""
        await self.transport.close()
        self.save_state()

    def save_state(self) -> None:
        if self._replay_path is not None:
            try:
                self.replay.save(self._replay_path)
            except OSError as exc:
                log.warning("cannot save replay state to %s: %s", self._replay_path, exc)

    # ------------------------------------------------------------------------------------------ publish

    async def publish(self, groups: list[RolloutGroup], round: int) -> int:
        """Sign and send ``groups`` (split into envelopes within the limits); return envelopes sent."""
        self._round = max(self._round, round)
        self.ingress.start_round(self._round)
        if not self.transport.reaches_peers:
            return 0  # training alone: nothing to sign or encode
        sendable = [g for g in groups if self._fits(g)]
        sent = 0
        for payload in self._payloads(sendable):
            await self._pace()
            try:
                await self.transport.publish(
                    wire.seal(
                        self.identity, self.cfg.swarm.swarm_id, self._next_seq(), payload, self._now_ms()
                    )
                )
            except TransportError as exc:
                # The node must survive its swarm: train alone, say so once, and say when it is back.
                if not self._transport_down:
                    self._transport_down = True
                    log.warning("swarm transport failed (%s); training alone until it recovers", exc)
                return sent
            sent += 1
        if self._transport_down:
            self._transport_down = False
            log.info("swarm transport recovered; sharing rollouts again")
        if sent:
            self.events.published(len(sendable))
        return sent

    def _fits(self, group: RolloutGroup) -> bool:
        try:
            wire.check_group(wire.group_to_pb(group), self.limits)
        except ProtocolError as exc:
            log.warning("not publishing group %s: %s (peers would reject it)", group.task.key(), exc)
            return False
        return True

    def _payloads(self, groups: list[RolloutGroup]) -> list[bytes]:
        """Batches of at most max_groups_per_batch whose envelopes stay under max_envelope_bytes."""
        budget = self.limits.max_envelope_bytes - 512  # room for the envelope fields and signature
        out: list[bytes] = []
        batch: list[RolloutGroup] = []
        for group in groups:
            if len(wire.encode_batch([group])) > budget:
                log.warning("not publishing group %s: larger than one envelope allows", group.task.key())
                continue
            candidate = [*batch, group]
            if (
                len(candidate) > self.limits.max_groups_per_batch
                or len(wire.encode_batch(candidate)) > budget
            ):
                out.append(wire.encode_batch(batch))
                candidate = [group]
            batch = candidate
        if batch:
            out.append(wire.encode_batch(batch))
        return out

    async def _pace(self) -> None:
        while not self._publish_pace.allow("self"):
            await asyncio.sleep(1.0 / self._publish_pace.rate / 4)

    def _next_seq(self) -> int:
        """Microseconds since the epoch, forced strictly increasing: survives restarts without state."""
        self._seq = max(self._seq + 1, int(self._clock.wall() * 1_000_000))
        return self._seq

    def _now_ms(self) -> int:
        return int(self._clock.wall() * 1000)

    # ------------------------------------------------------------------------------------------ receive

    def _on_envelope(self, data: bytes, via: str) -> None:
        self.received_envelopes += 1
        self.received_bytes += len(data)
        start = time.thread_time()
        self.receiver.handle(data, via)
        self.receive_cpu_s += time.thread_time() - start

    def rotate_ingress(self) -> None:
        """Bounded ingress: draw the senders to take from next, if due, and tell the transport (called at
        start and at the end of each round, in ``sample``, so the choice is in place before peers publish
        the next round)."""
        if self.ingress.rotate(self._round, self.transport.members(), self.transport.far_members()):
            self.transport.select_senders(self.ingress.selection)

    def _pool_groups(self, groups: list[RolloutGroup]) -> None:
        for group in groups:
            group.round = self._round
            self._accepted.put(group.peer, (self._accepted.get(group.peer) or 0) + 1)
        self.pool.add(groups, self._round)

    def _admits(self, peer_id: str) -> bool:
        return self.admission.allowed(peer_id)

    def sample(self, j: int, round: int, rescore: Rescore) -> list[RolloutGroup]:
        """Up to J external groups to train on this round (marked origin='external', peer=sender)."""
        self._round = max(self._round, round)
        self.pool.prune(self._round)
        chosen = self.sampler.sample(self.pool, j, rescore)
        self.rotate_ingress()
        self.ingress.start_round(self._round + 1)  # what arrives from now on is for the next round
        if self._round - self._last_saved_round >= _SAVE_REPLAY_EVERY_ROUNDS:
            self._last_saved_round = self._round
            self.save_state()
        return chosen

    def observe_round(self, reward_mean: float, zero_advantage_share: float, external_used: int) -> None:
        """Report the round's own evidence: mean reward of own completions, share of own groups with zero
        advantage, external groups trained on (drives the 'adaptive' strategy)."""
        self.sampler.adaptive.observe(reward_mean, zero_advantage_share, external_used)

    # ---------------------------------------------------------------------------------------- inspection

    def peers(self) -> list[PeerState]:
        """Connected, admitted peers."""
        peers = [p for p in self.transport.peers() if self._admits(p.peer_id)]
        self.events.peers_connected(len(peers))
        return peers

    def pool_size(self) -> int:
        return len(self.pool)

    def pool_entries(self) -> list[PoolEntry]:
        return [e for _, e in self.pool.entries()]

    def peer_records(self) -> dict[str, PeerRecord]:
        """Scores and bans of the peers this node has judged (``banned_until`` in wall-clock seconds)."""
        offset = self._clock.wall() - self._clock.monotonic()
        out = self.admission.snapshot()
        for rec in out.values():
            rec.banned_until = (
                rec.banned_until + offset if rec.banned_until > self._clock.monotonic() else 0.0
            )
        return out

    def accepted_by_peer(self) -> dict[str, int]:
        """Groups accepted since start, by sender peer id (for the control API; LRU-bounded)."""
        return dict(self._accepted.items())

    def listen_addrs(self) -> list[str]:
        return self.transport.listen_addrs()

    @property
    def peer_id(self) -> str:
        """This node's peer id in the swarm; empty when it trains alone (the null transport)."""
        return self.identity.peer_id_text if self.transport.reaches_peers else ""
