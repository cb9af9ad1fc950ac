"""A gossip-only swarm node: the real ``Swarm`` facade and transport, no model, no torch.

Two uses:

* a relay/bootstrap peer that forwards a swarm's gossip without training
  (``python -m swarmrl.apps.gossip_node --config node.yaml``; it prints one JSON line with its peer id and
  multiaddrs, then runs until SIGINT/SIGTERM). Give it the swarm's ``tasks`` section: it verifies what it
  receives like any node (forwarding does not depend on that, but its own pool and peer scores do);
* load generation for benchmarks and smoke tests (``--control stdio``): the process reads JSON-line commands
  on stdin and answers with JSON lines on stdout (see ``ControlLoop``), so a coordinator can drive rounds
  across many node processes and time them.

Everything a received envelope goes through is the production path: libp2p (or gRPC) transport, signature,
replay and rate checks, task regeneration from the node's own task sources, the rollout pool. The node
refuses to run if torch got imported (the ``swarm``, ``protocol``, ``tasks`` and ``config`` packages must
stay torch-free so that such a process stays small).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import random
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from swarmrl.config import NodeConfig, load_config, parse_override
from swarmrl.errors import ConfigError, InvalidValue, NodeError, SwarmRLError
from swarmrl.protocol import envelope as wire
from swarmrl.protocol.types import Completion, PolicyInfo, RolloutGroup
from swarmrl.swarm.events import CountingEvents
from swarmrl.swarm.identity import Identity
from swarmrl.swarm.lru import LRU
from swarmrl.swarm.pool import RolloutPool
from swarmrl.swarm.service import Swarm
from swarmrl.swarm.transports.factory import build_transport
from swarmrl.tasks import TaskSampler, TaskSource, build_source

log = logging.getLogger(__name__)

#: Model name carried by synthetic groups (``PolicyInfo.model``); ``PolicyInfo.version`` carries the tag.
SYNTHETIC_MODEL = "gossip-bench"
#: Completion texts of synthetic groups stay under this many characters (the default limit is 16384).
_MAX_COMPLETION_CHARS = 8000
_MIN_COMPLETIONS = 4
_TAGS_TRACKED = 4096


def torch_loaded() -> bool:
    """True when torch has been imported into this process (a gossip-only node must never do that)."""
    return "torch" in sys.modules


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (Linux reports ru_maxrss in KiB)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


class WatchedPool(RolloutPool):
    """The rollout pool, plus a listener told about every group added (after it is pooled)."""

    def __init__(
        self,
        max_groups: int,
        per_peer_share: float,
        max_age_rounds: int,
        listener: Callable[[list[RolloutGroup]], None],
    ) -> None:
        super().__init__(max_groups, per_peer_share, max_age_rounds)
        self._listener = listener

    def add(self, groups: list[RolloutGroup], round_: int) -> None:
        super().add(groups, round_)
        self._listener(groups)


class SyntheticBatches:
    """Rollout groups of real tasks with filler completions, sized so one group's envelope is ~N bytes.

    Each group is unique (its completions name the publisher, tag and index), so receivers' duplicate
    filters never drop it; its question and answer are the real ones of the task, so receivers' task
    regeneration accepts it. ``PolicyInfo.version`` carries the tag, which lets receivers count per tag.
    """

    def __init__(
        self,
        identity: Identity,
        swarm_id: str,
        source: TaskSource,
        seed: int = 0,
        *,
        like: SyntheticBatches | None = None,
    ) -> None:
        """``like``: reuse another instance's filler text and calibration (simulations of many nodes)."""
        self._identity = identity
        self._swarm_id = swarm_id
        self._source = source
        self._filler: str
        self._sizes: dict[int, list[int]]
        if like is not None:
            self._filler, self._sizes = like._filler, like._sizes
            return
        rng = random.Random(seed)
        letters = "abcdefghijklmnopqrstuvwxyz0123456789 "
        self._filler = "".join(rng.choices(letters, k=4 * _MAX_COMPLETION_CHARS))
        self._sizes = {}

    def group(self, tag: int, index: int, envelope_bytes: int) -> RolloutGroup:
        """One group whose sealed single-group envelope is within a few bytes of ``envelope_bytes``."""
        sizes = self._sizes.get(envelope_bytes)
        if sizes is None:
            sizes = self._calibrate(envelope_bytes)
            self._sizes[envelope_bytes] = sizes
        return self._build(tag, index, sizes)

    def envelope_size(self, group: RolloutGroup) -> int:
        """Bytes of the envelope that carries ``group`` alone (as ``Swarm.publish`` would seal it)."""
        payload = wire.encode_batch([group])
        now_ms = int(time.time() * 1000)
        return len(wire.seal(self._identity, self._swarm_id, now_ms * 1000, payload, now_ms))

    def _build(self, tag: int, index: int, sizes: list[int]) -> RolloutGroup:
        task = self._source.get(tag * 1009 + index)
        stamp = f"{self._identity.peer_id_text}:{tag}:{index}:"
        completions = []
        for i, size in enumerate(sizes):
            head = f"{stamp}{i}:"
            start = (tag * 7919 + index * 104729 + i * 131) % (len(self._filler) - _MAX_COMPLETION_CHARS)
            body = self._filler[start : start + max(0, size - len(head))]
            completions.append(Completion(text=head + body))
        return RolloutGroup(
            task=task.ref,
            question=task.question,
            answer=task.answer,
            completions=completions,
            policy=PolicyInfo(model=SYNTHETIC_MODEL, version=tag, node=self._identity.peer_id_text),
            advisory_rewards=[float(i % 2) for i in range(len(sizes))],
        )

    def _calibrate(self, target: int) -> list[int]:
        """Completion lengths that bring the envelope to ``target`` bytes (a few refinement passes)."""
        base = self.envelope_size(self._build(0, 0, [1] * _MIN_COMPLETIONS))
        total = max(_MIN_COMPLETIONS, target - base + _MIN_COMPLETIONS)
        for _ in range(4):
            count = max(_MIN_COMPLETIONS, math.ceil(total / _MAX_COMPLETION_CHARS))
            sizes = [total // count + (1 if i < total % count else 0) for i in range(count)]
            error = target - self.envelope_size(self._build(0, 0, sizes))
            if abs(error) <= 2:
                break
            total = max(count, total + error)
        return sizes


class GossipNode:
    """A started ``Swarm`` with counting hooks: which tags' groups have arrived, from how many senders."""

    def __init__(self, cfg: NodeConfig, data_dir: Path) -> None:
        if cfg.swarm.transport in ("none", "memory"):
            raise ConfigError(
                "swarm.transport",
                f"a gossip-only node needs a network transport ('libp2p' or 'grpc'), not '{cfg.swarm.transport}'",
            )
        self.cfg = cfg
        self.data_dir = data_dir
        ident_path = Path(cfg.swarm.identity_file).expanduser()
        self.identity = Identity.load_or_create(
            ident_path if ident_path.is_absolute() else data_dir / ident_path
        )
        sources = [
            build_source(s.source, s.dataset, s.config, cfg.tasks.seed, cfg.tasks.size)
            for s in cfg.tasks.sources
        ]
        self.tasks = TaskSampler(
            sources,
            [s.weight for s in cfg.tasks.sources],
            random.Random(cfg.node.seed),
            cfg.tasks.eval_questions,
        )
        self.events = CountingEvents()
        transport = build_transport(cfg, self.identity, data_dir, events=self.events)
        self.swarm = Swarm(cfg, self.identity, transport, self.tasks.resolve, self.events, data_dir=data_dir)
        pool = cfg.swarm.pool
        self.swarm.pool = WatchedPool(
            pool.max_groups, pool.per_peer_share, pool.max_age_rounds, self._on_groups
        )
        self.batches = SyntheticBatches(self.identity, cfg.swarm.swarm_id, sources[0], seed=cfg.node.seed)
        self._tally: LRU[int, int] = LRU(_TAGS_TRACKED)
        #: groups the node sampled (``drain_pool(sample=J)``) and their distinct senders (pool diversity)
        self.sampled = 0
        self.sampled_senders: set[str] = set()
        self._watchers: dict[int, tuple[int, Callable[[int], None]]] = {}

    async def start(self) -> None:
        await self.swarm.start()
        self.check_torch_free()

    async def close(self) -> None:
        await self.swarm.close()

    def check_torch_free(self) -> None:
        """Raise NodeError if torch was imported: the gossip-only process must stay small."""
        if torch_loaded():
            raise NodeError(
                "torch was imported into a gossip-only node; the swarm, protocol, tasks and config packages "
                "must not import it (find the import with `python -X importtime -m swarmrl.apps.gossip_node`)"
            )

    # ------------------------------------------------------------------------------------- counting

    def received(self, tag: int) -> int:
        """Groups with this tag accepted from peers so far."""
        return self._tally.get(tag) or 0

    def watch(self, tag: int, expect: int, done: Callable[[int], None]) -> None:
        """Call ``done(count)`` once ``expect`` groups with ``tag`` have been accepted (maybe right away)."""
        count = self.received(tag)
        if count >= expect:
            done(count)
            return
        self._watchers[tag] = (expect, done)

    def unwatch(self, tag: int) -> None:
        self._watchers.pop(tag, None)

    def _on_groups(self, groups: list[RolloutGroup]) -> None:
        for group in groups:
            if group.policy.model != SYNTHETIC_MODEL:
                continue
            tag = group.policy.version
            count = self.received(tag) + 1
            self._tally.put(tag, count)
            watcher = self._watchers.get(tag)
            if watcher is not None and count >= watcher[0]:
                del self._watchers[tag]
                watcher[1](count)

    def drain_pool(self, round_: int, sample: int = 0) -> int:
        """Consume everything pooled, as a training node's sampler would (keeps the pool from filling); with
        ``sample`` > 0 the sampler takes that many (recorded: ``sampled_senders``) and the rest is dropped."""
        taken = self.swarm.sample(sample or len(self.swarm.pool), round_, _zero_rewards)
        if sample:
            self.sampled += len(taken)
            if len(self.sampled_senders) < _TAGS_TRACKED:
                self.sampled_senders.update(g.peer for g in taken)
        leftover = len(self.swarm.pool)
        if leftover:
            self.swarm.pool.discard([i for i, _ in self.swarm.pool.entries()])
        return len(taken) + leftover

    # ------------------------------------------------------------------------------------- publishing

    async def publish_synthetic(self, tag: int, batches: int, envelope_bytes: int, groups: int = 1) -> int:
        """Publish ``batches`` envelopes of ``groups`` synthetic groups each (tag ``tag``; each group alone
        would seal to ~``envelope_bytes``); return envelopes sent."""
        sent = 0
        for index in range(batches):
            batch = [self.batches.group(tag, index * groups + i, envelope_bytes) for i in range(groups)]
            sent += await self.swarm.publish(batch, tag)
        return sent

    def info(self) -> dict[str, Any]:
        return {
            "peer_id": self.identity.peer_id_text,
            "addrs": self.swarm.listen_addrs(),
            "peers": len(self.swarm.peers()),
            "torch_loaded": torch_loaded(),
            "pid": os.getpid(),
        }

    def stats(self) -> dict[str, Any]:
        ev = self.events
        out: dict[str, Any] = {
            "published_groups": ev.published_groups,
            "accepted_groups": ev.accepted_groups,
            "rejected": dict(ev.rejections),
            "messages_sent": ev.sent,
            "messages_received": ev.received,
            "received_bytes": self.swarm.received_bytes,
            "received_envelopes": self.swarm.received_envelopes,
            "receive_cpu_s": self.swarm.receive_cpu_s,
            "delays": ev.delays[-_TAGS_TRACKED:],
            "sampled": self.sampled,
            "sampled_senders": len(self.sampled_senders),
            "selected": len(self.swarm.ingress.selection or ()),
            "peak_rss_bytes": peak_rss_bytes(),
            "cpu_seconds": cpu_seconds(),
            "torch_loaded": torch_loaded(),
        }
        transport_stats = getattr(self.swarm.transport, "stats", None)
        if callable(transport_stats):
            snap = transport_stats()
            out["transport"] = {k: getattr(snap, k) for k in getattr(snap, "__dataclass_fields__", {})}
        return out


def _zero_rewards(groups: list[RolloutGroup]) -> list[list[float]]:
    return [[0.0] * g.size for g in groups]


class ControlLoop:
    """JSON-line commands on stdin, JSON-line answers on stdout (one object per line).

    Commands (``cmd``) and answers (``event``):

    * ``info`` -> ``info``: peer_id, addrs, peers, torch_loaded, pid.
    * ``wait_peers`` {count, timeout_s} -> ``peers``: count, ok (at least ``count`` peers connected).
    * ``publish`` {tag, batches, envelope_bytes, expect, timeout_s, groups, sample} -> ``have``: tag, ok,
      received, t (``time.monotonic()`` when this node held ``expect`` groups with ``tag`` from peers),
      published_t (when its own ``batches`` envelopes of ``groups`` groups each were handed to the
      transport). The pool is drained afterwards (``sample`` > 0: the sampler takes that many first).
    * ``stats`` -> ``stats``: counters, peak RSS and CPU seconds of this process, torch_loaded.
    * ``reset_sampled`` -> ``reset_sampled``: the sampled-group count and sender set start afresh (after a
      benchmark's warm-up rounds).
    * ``quit`` -> ``bye``, then the node closes.

    A malformed command is answered with ``error`` {message}; the loop goes on.
    """

    def __init__(self, node: GossipNode, out: TextIO) -> None:
        self.node = node
        self.out = out
        self._tasks: set[asyncio.Task[None]] = set()

    def emit(self, event: str, **fields: Any) -> None:
        self.out.write(json.dumps({"event": event, **fields}) + "\n")
        self.out.flush()

    async def run(self, reader: asyncio.StreamReader) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return  # the coordinator went away
            try:
                msg = json.loads(line)
                if not isinstance(msg, dict):
                    raise InvalidValue("a command must be a JSON object")
                cmd = str(msg.get("cmd", ""))
            except ValueError as exc:
                self.emit("error", message=f"bad command line: {exc}")
                continue
            if cmd == "quit":
                await self._finish_pending(float(msg.get("timeout_s", 10.0)))
                self.emit("bye", **self.node.stats())
                return
            self._spawn(self._dispatch(cmd, msg))
            await asyncio.sleep(0)  # let the command start even when more lines are already buffered

    async def _finish_pending(self, timeout_s: float) -> None:
        """Let in-flight commands finish (up to ``timeout_s``), then cancel what is left."""
        pending = list(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout_s)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=1.0)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _dispatch(self, cmd: str, msg: dict[str, Any]) -> None:
        try:
            if cmd == "info":
                self.emit("info", **self.node.info())
            elif cmd == "wait_peers":
                await self._wait_peers(int(msg.get("count", 1)), float(msg.get("timeout_s", 30.0)))
            elif cmd == "publish":
                await self._publish(msg)
            elif cmd == "stats":
                self.emit("stats", **self.node.stats())
            elif cmd == "reset_sampled":  # benchmarks: diversity over the measured rounds only
                self.node.sampled = 0
                self.node.sampled_senders.clear()
                self.emit("reset_sampled")
            else:
                self.emit("error", message=f"unknown command {cmd!r}")
        except (ValueError, TypeError, KeyError, SwarmRLError) as exc:
            self.emit("error", message=f"{cmd}: {exc}")

    async def _wait_peers(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        peers = len(self.node.swarm.peers())
        while peers < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            peers = len(self.node.swarm.peers())
        self.emit("peers", count=peers, ok=peers >= count)

    async def _publish(self, msg: dict[str, Any]) -> None:
        tag, batches = int(msg["tag"]), int(msg.get("batches", 1))
        size, expect = int(msg["envelope_bytes"]), int(msg["expect"])
        timeout_s = float(msg.get("timeout_s", 60.0))
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[int, float]] = loop.create_future()

        def finished(count: int) -> None:
            if not done.done():
                done.set_result((count, time.monotonic()))

        self.node.watch(tag, expect, finished)
        await self.node.publish_synthetic(tag, batches, size, int(msg.get("groups", 1)))
        published_t = time.monotonic()
        try:
            count, t = await asyncio.wait_for(asyncio.shield(done), timeout_s)
            ok = True
        except TimeoutError:
            self.node.unwatch(tag)
            count, t, ok = self.node.received(tag), time.monotonic(), False
        self.emit("have", tag=tag, ok=ok, received=count, t=t, published_t=published_t)
        self.node.drain_pool(tag, int(msg.get("sample", 0)))


# ------------------------------------------------------------------------------------------------ main


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m swarmrl.apps.gossip_node",
        description="A gossip-only swarm node (no model): relays the swarm's rollouts, or, with --control "
        "stdio, publishes synthetic batches on command (benchmarks).",
    )
    p.add_argument(
        "--config", type=Path, default=None, help="node YAML config (the swarm and tasks sections)"
    )
    p.add_argument("--data-dir", type=Path, default=None, help="directory for the identity key and caches")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="config override (YAML value), repeatable",
    )
    p.add_argument("--control", choices=["none", "stdio"], default="none", help="read JSON commands on stdin")
    p.add_argument("--log-level", default="WARNING", help="logging level (logs go to stderr)")
    return p.parse_args(argv)


def _config(args: argparse.Namespace) -> NodeConfig:
    overrides: dict[str, Any] = {}
    for text in args.overrides:
        key, value = parse_override(text)
        overrides[key] = value
    if args.data_dir is not None:
        overrides["node.data_dir"] = str(args.data_dir)
    cfg = load_config(args.config, overrides=overrides)
    if cfg.swarm.transport == "none" and "swarm.transport" not in overrides:
        cfg = cfg.model_copy(update={"swarm": cfg.swarm.model_copy(update={"transport": "libp2p"})})
    return cfg


async def _serve(cfg: NodeConfig, control: str) -> None:
    data_dir = Path(cfg.node.data_dir).expanduser()
    data_dir.mkdir(parents=True, exist_ok=True)
    node = GossipNode(cfg, data_dir)
    await node.start()
    try:
        if control == "stdio":
            loop = asyncio.get_running_loop()
            reader = asyncio.StreamReader()
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
            control_loop = ControlLoop(node, sys.stdout)
            control_loop.emit("ready", **node.info())
            await control_loop.run(reader)
        else:
            sys.stdout.write(json.dumps({"event": "ready", **node.info()}) + "\n")
            sys.stdout.flush()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        node.check_torch_free()
    finally:
        with contextlib.suppress(Exception):
            await node.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; exit status 2 for configuration errors, 1 for other swarmrl errors."""
    args = _parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = _config(args)
        asyncio.run(_serve(cfg, args.control))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SwarmRLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
