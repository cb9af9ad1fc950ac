"""``swarm-node simulate``: N gossip-only nodes on the in-memory transport with a link model, on a virtual clock.

What runs is the real swarm code, one ``Swarm`` per node: signing and sealing of every envelope, the whole
receive path (ed25519 signature, replay, rate limits, task regeneration from the node's task source,
duplicate checks), the rollout pool, the sampler and bounded ingress (``swarmrl.swarm.ingress``). What is
simulated: the network (``MemoryHub`` with a ``LinkModel``: log-normal latency, loss, per-node uplink and
downlink bandwidth), churn (a share of the nodes leaves each round and comes back the next), and time: a
discrete-event loop advances a virtual clock, so 1000 nodes run on one core in minutes. Groups are
synthetic (``SyntheticBatches``, real tasks with filler completions of a realistic size).

Each round every online node publishes its ``groups_per_node`` groups (one envelope) at a random moment in
the first ``publish_spread`` of the round; at the round's end it samples ``sample_groups`` external groups
(``uniform``; the sampled senders give the pool diversity) and draws its next senders. Per node and round it
reports ingress bytes and envelopes, accepted groups, receive-path CPU (thread time inside the receive
path), duplicate copies, and delivery latency (virtual seconds from signing to acceptance). Economies, all
stated: nodes share one task source object (each still regenerates and compares every task), and one
asyncio loop; rounds are synchronous.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarmrl.apps.gossip_node import SyntheticBatches
from swarmrl.config import NodeConfig
from swarmrl.errors import ConfigError
from swarmrl.protocol.types import RolloutGroup
from swarmrl.swarm.events import CountingEvents
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.service import Swarm
from swarmrl.swarm.transports.memory import LinkModel, MemoryHub
from swarmrl.tasks import TaskSampler, build_source

_BASE_WALL = 1_800_000_000.0


@dataclass(frozen=True, slots=True)
class SimSettings:
    nodes: int
    rounds: int = 4
    #: Rounds run first and left out of the figures (selections settle, pools fill).
    warmup: int = 1
    round_s: float = 30.0
    publish_spread: float = 0.5
    groups_per_node: int = 4
    #: Bytes of one group's single-group envelope (a tiny model's 8 completions of ~1 KB each: ~10 KB).
    group_bytes: int = 10_000
    sample_groups: int = 4
    #: 0 = unbounded (the old behaviour: every envelope to every node).
    ingress_groups_per_round: int = 32
    ingress_senders: int = 8
    latency_median_s: float = 0.05
    latency_sigma: float = 0.5
    loss: float = 0.01
    uplink_bytes_per_s: float = 2_500_000.0  # 20 Mbit/s
    downlink_bytes_per_s: float = 12_500_000.0  # 100 Mbit/s
    churn: float = 0.02
    seed: int = 0

    def check(self) -> None:
        if self.nodes < 2:
            raise ConfigError("simulate.nodes", "needs at least 2 nodes")
        if self.rounds <= self.warmup:
            raise ConfigError("simulate.rounds", f"must exceed the {self.warmup} warm-up round(s)")
        if not 0 <= self.loss < 1 or not 0 <= self.churn < 1:
            raise ConfigError("simulate.loss", "loss and churn must be shares in [0, 1)")


class VirtualClock:
    """The simulation's time (``swarmrl.swarm.clock.Clock``): moved only by the event loop."""

    def __init__(self) -> None:
        self.t = 0.0

    def wall(self) -> float:
        return _BASE_WALL + self.t

    def monotonic(self) -> float:
        return 1000.0 + self.t


@dataclass
class _Node:
    swarm: Swarm
    events: CountingEvents
    batches: SyntheticBatches
    online: bool = True
    sampled_senders: set[str] = field(default_factory=set)
    sampled: int = 0


def node_config(s: SimSettings) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "swarm": {
                "transport": "memory",
                "swarm_id": "simulate",
                "max_publish_per_second": 100_000,
                "ingress_groups_per_round": s.ingress_groups_per_round,
                "ingress_senders": s.ingress_senders,
                "peer_cache_file": "",
                "admission": {"replay_state_file": ""},
                "pool": {"max_age_rounds": 2},
            },
            "sampling": {"strategy": "uniform"},
        }
    )


class Simulation:
    """One run at one N (see the module doc)."""

    def __init__(self, settings: SimSettings) -> None:
        settings.check()
        self.s = settings
        self.clock = VirtualClock()
        self._heap: list[tuple[float, int, Callable[[], object]]] = []
        self._order = itertools.count()
        link = LinkModel(
            settings.latency_median_s,
            settings.latency_sigma,
            settings.loss,
            settings.uplink_bytes_per_s,
            settings.downlink_bytes_per_s,
        )
        self.hub = MemoryHub(seed=settings.seed, link=link, scheduler=self._later, now=lambda: self.clock.t)
        self.rng = random.Random(settings.seed)
        self.cfg = node_config(settings)
        src = self.cfg.tasks.sources[0]
        self.source = build_source(
            src.source, src.dataset, src.config, self.cfg.tasks.seed, self.cfg.tasks.size
        )
        self.tasks = TaskSampler([self.source], [1.0], random.Random(0), 0)
        self.nodes: list[_Node] = []
        self.rows: list[dict[str, float]] = []  # one per (node, measured round)

    def _later(self, delay: float, callback: Callable[[], object]) -> None:
        heapq.heappush(self._heap, (self.clock.t + max(0.0, delay), next(self._order), callback))

    def _build(self, index: int) -> _Node:
        ident = Identity.generate()
        events = CountingEvents()
        transport = self.hub.transport(ident.peer_id_text, events)
        swarm = Swarm(self.cfg, ident, transport, self.tasks.resolve, events, clock=self.clock)
        first = self.nodes[0].batches if self.nodes else None
        batches = SyntheticBatches(ident, self.cfg.swarm.swarm_id, self.source, seed=index, like=first)
        return _Node(swarm, events, batches)

    async def run(self) -> dict[str, Any]:
        t0 = time.monotonic()
        cpu0 = time.process_time()
        for i in range(self.s.nodes):
            self.nodes.append(self._build(i))
        for n in self.nodes:
            await n.swarm.start()
        for n in self.nodes:
            n.swarm.rotate_ingress()  # all have joined: everyone knows the whole swarm
        for r in range(self.s.rounds):
            await self._round(r)
        result = self._summary()
        result["wall_s"] = round(time.monotonic() - t0, 1)
        result["sim_cpu_s"] = round(time.process_time() - cpu0, 1)
        for n in self.nodes:
            if n.online:
                await n.swarm.transport.close()
        return result

    async def _round(self, r: int) -> None:
        s = self.s
        start = r * s.round_s
        await self._churn(r)
        before = [self._snapshot(n) for n in self.nodes]
        publishers: list[tuple[float, _Node]] = []
        for n in self.nodes:
            if n.online:
                publishers.append((start + self.rng.random() * s.publish_spread * s.round_s, n))
        for at, n in publishers:
            self._later(at - self.clock.t, _publish_later(self, n, r))
        await self._advance(start + s.round_s)
        for n in self.nodes:
            if n.online:
                chosen = n.swarm.sample(s.sample_groups, r, _zero_rewards)
                if r >= s.warmup:
                    n.sampled += len(chosen)
                    n.sampled_senders.update(g.peer for g in chosen)
        if r >= s.warmup:
            for n, b in zip(self.nodes, before, strict=True):
                if n.online:
                    after = self._snapshot(n)
                    self.rows.append({k: after[k] - b[k] for k in after} | {"pool": len(n.swarm.pool)})

    async def _advance(self, until: float) -> None:
        """Run every event due before ``until`` in time order (publishes are coroutines, awaited in turn)."""
        while self._heap and self._heap[0][0] < until:
            at, _, callback = heapq.heappop(self._heap)
            self.clock.t = at
            out = callback()
            if asyncio.iscoroutine(out):
                await out
        self.clock.t = until

    async def _churn(self, r: int) -> None:
        if not self.s.churn or r == 0:
            return
        for n in self.nodes:
            if not n.online:
                await n.swarm.transport.start()
                n.online = True
                n.swarm.rotate_ingress()
            elif self.rng.random() < self.s.churn:
                await n.swarm.transport.close()
                n.online = False

    @staticmethod
    def _snapshot(n: _Node) -> dict[str, float]:
        sw, ev = n.swarm, n.events
        return {
            "bytes": sw.received_bytes,
            "envelopes": sw.received_envelopes,
            "accepted": ev.accepted_groups,
            "cpu_s": sw.receive_cpu_s,
            "duplicates": ev.rejections["replay"] + ev.rejections["duplicate"],
            "over_budget": ev.rejections["over_budget"],
            "rejected": sum(v for k, v in ev.rejections.items() if k != "over_budget"),
        }

    def _summary(self) -> dict[str, Any]:
        s = self.s
        rows = self.rows
        delays = [d for n in self.nodes for d in n.events.delays]
        group_env = self.nodes[0].batches.envelope_size(self.nodes[0].batches.group(0, 0, s.group_bytes))
        # one sender's round: one envelope of groups_per_node groups (each group ~group_bytes - overhead)
        sender_round_bytes = s.groups_per_node * group_env
        k = min(s.ingress_senders, s.nodes - 1)
        bounded = s.ingress_groups_per_round > 0 and s.nodes - 1 > s.ingress_senders
        picks: dict[str, int] = {}
        for n in self.nodes:
            for peer, count in n.swarm.ingress.counters.picks.items():
                picks[peer] = picks.get(peer, 0) + count
        diversity = [len(n.sampled_senders) / min(s.nodes - 1, n.sampled) for n in self.nodes if n.sampled]
        return {
            "nodes": s.nodes,
            "mode": "bounded" if s.ingress_groups_per_round > 0 else "all",
            "settings": asdict(s),
            "bound": {
                "groups_per_round": s.ingress_groups_per_round if bounded else None,
                "senders": k if bounded else s.nodes - 1,
                "bytes_per_round": (k if bounded else s.nodes - 1) * sender_round_bytes,
            },
            "ingress_bytes_per_round": _dist([r["bytes"] for r in rows]),
            "ingress_envelopes_per_round": _dist([r["envelopes"] for r in rows]),
            "accepted_groups_per_round": _dist([r["accepted"] for r in rows]),
            "receive_cpu_ms_per_round": _dist([1000 * r["cpu_s"] for r in rows], digits=2),
            "duplicates_per_round": _dist([r["duplicates"] for r in rows]),
            "over_budget_per_round": _dist([r["over_budget"] for r in rows]),
            "rejected_other": sum(r["rejected"] for r in rows),
            "pool_groups": _dist([r["pool"] for r in rows]),
            "latency_s": {
                "p50": _pct(delays, 0.5),
                "p90": _pct(delays, 0.9),
                "p99": _pct(delays, 0.99),
            },
            "diversity": {
                "sampled_sender_share": round(statistics.fmean(diversity), 3) if diversity else None,
                "senders_ever_selected_share": round(len(picks) / s.nodes, 3) if picks else None,
                "selection_fairness_jain": _jain(list(picks.values())) if picks else None,
            },
            "link": {"delivered": self.hub.delivered, "lost": self.hub.dropped},
        }


def _publish_later(sim: Simulation, n: _Node, r: int) -> Callable[[], Coroutine[Any, Any, None]]:
    async def go() -> None:
        if not n.online:
            return
        groups = [n.batches.group(r, i, sim.s.group_bytes) for i in range(sim.s.groups_per_node)]
        await n.swarm.publish(groups, r)

    return go


def _zero_rewards(groups: list[RolloutGroup]) -> list[list[float]]:
    return [[0.0] * g.size for g in groups]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))], 4)


def _dist(values: list[float], digits: int = 1) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "p50": None, "p99": None, "max": None}
    return {
        "mean": round(statistics.fmean(values), digits),
        "p50": _pct(values, 0.5),
        "p99": _pct(values, 0.99),
        "max": round(max(values), digits),
    }


def _jain(values: list[int]) -> float:
    """Jain's fairness index of how often each sender was selected (1 = perfectly even)."""
    total = sum(values)
    return round(total * total / (len(values) * sum(v * v for v in values)), 3) if total else math.nan


def simulate(settings: SimSettings) -> dict[str, Any]:
    return asyncio.run(Simulation(settings).run())


def markdown(results: list[dict[str, Any]]) -> str:
    head = (
        "| N | mode | ingress KB/round mean (max) | bound KB | envelopes/round mean (max) | groups/round "
        "mean (max) | budget | recv CPU ms/round mean (p99) | latency p50/p99 s | sampled-sender share | "
        "senders ever selected | duplicates/round | wall s |\n|" + "---|" * 13
    )
    lines = [head]
    for r in results:
        b, e, g, c = (
            r["ingress_bytes_per_round"],
            r["ingress_envelopes_per_round"],
            r["accepted_groups_per_round"],
            r["receive_cpu_ms_per_round"],
        )
        lat, div = r["latency_s"], r["diversity"]
        lines.append(
            f"| {r['nodes']} | {r['mode']} | {b['mean'] / 1000:.0f} ({b['max'] / 1000:.0f}) | "
            f"{r['bound']['bytes_per_round'] / 1000:.0f} | {e['mean']} ({e['max']:.0f}) | {g['mean']} "
            f"({g['max']:.0f}) | {r['bound']['groups_per_round'] or '-'} | {c['mean']} ({c['p99']}) | "
            f"{lat['p50']}/{lat['p99']} | {div['sampled_sender_share']} | {div['senders_ever_selected_share']} | "
            f"{r['duplicates_per_round']['mean']} | {r['wall_s']} |"
        )
    return "\n".join(lines)


def run_cli(
    nodes: list[int], out: Path | None, *, modes: list[str], overrides: dict[str, Any]
) -> list[dict[str, Any]]:
    """The ``swarm-node simulate`` command: one run per (N, mode), then JSON (to ``out``) and a table."""
    results = []
    for n in nodes:
        for mode in modes:
            fields: dict[str, Any] = {"nodes": n, **overrides}
            if mode == "all":
                fields["ingress_groups_per_round"] = 0
            try:
                settings = SimSettings(**fields)
            except TypeError as exc:
                raise ConfigError("simulate", f"unknown setting: {exc}") from None
            results.append(simulate(settings))
    if out is not None:
        out.write_text(json.dumps({"results": results}, indent=2) + "\n")
    return results
