"""Helpers for the swarm tests that run real ``swarm-node`` processes on loopback.

``Cluster`` starts nodes from small FAST configs, finds each one through its ``node.json`` (bound ports,
peer id, listen addresses), queries it through the control API and its metrics, and always stops every
process it started (SIGTERM, then SIGKILL) when the test ends, whatever happened.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from swarmrl.errors import NodeError
from swarmrl.node.control import ControlClient
from swarmrl.node.runinfo import RunInfo, read_run_info
from tests.nodeutil import deep_merge, metric_value, scrape, start_node, wait_for, write_config

#: Nodes that trade every round: uniform sampling (the tiny model's groups often have zero advantage,
#: which the default strategy would skip), a few external groups, and no end (stopped by the test).
SWARM_NODE: dict[str, Any] = {
    "node": {"rounds": 0},
    "sampling": {"external_groups": 2, "strategy": "uniform"},
    "swarm": {"publish_groups": 2},
}
START_TIMEOUT_S = 400.0
#: Lines that must never appear in a node's log during these tests.
BAD_LOG = re.compile(r"Traceback|\bERROR\b|CRITICAL")


@dataclass
class Proc:
    """One node process: its data dir, log, config and (once up) its node.json."""

    name: str
    data_dir: Path
    log: Path
    config: Path
    process: subprocess.Popen[bytes]
    info: RunInfo | None = None

    def wait_up(self, timeout: float = START_TIMEOUT_S) -> RunInfo:
        def ready() -> RunInfo | None:
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")
            try:
                info = read_run_info(self.data_dir)
            except NodeError:
                return None
            return info if info.pid == self.process.pid else None

        self.info = wait_for(ready, timeout, f"{self.name} to write node.json", interval=0.1)
        return self.info

    @property
    def control(self) -> ControlClient:
        if self.info is None:
            raise AssertionError(f"{self.name} is not up")
        return ControlClient(self.info.control, timeout_s=10.0)

    @property
    def peer_id(self) -> str:
        if self.info is None:
            raise AssertionError(f"{self.name} is not up")
        return self.info.peer_id

    def metrics(self) -> str:
        if self.info is None:
            raise AssertionError(f"{self.name} is not up")
        return scrape(self.info.metrics_url)

    def metric(self, name: str, labels: str = "") -> float:
        return metric_value(self.metrics(), name, labels) or 0.0

    def accepted_from(self, other: Proc) -> int:
        """Groups this node accepted from ``other`` (control API, per signed sender)."""
        return self.accepted_from_id(other.peer_id)

    def accepted_from_id(self, peer_id: str) -> int:
        for p in self.control.peers().peers:
            if p.peer_id == peer_id:
                return int(p.accepted_groups)
        return 0

    def round(self) -> int:
        return int(self.control.status().round)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def bad_log_lines(self) -> list[str]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return [line for line in text.splitlines() if BAD_LOG.search(line)]

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait for a clean exit (finishes the round, checkpoints)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill9(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@dataclass
class Cluster:
    """Starts node processes under ``root`` and cleans all of them up."""

    root: Path
    procs: list[Proc] = field(default_factory=list)
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(
        self,
        name: str,
        extra: dict[str, Any] | None = None,
        seed: int | None = None,
        data_dir: Path | None = None,
        nofile: int | None = None,
    ) -> Proc:
        """Start (or restart, with the same ``data_dir``) one node; does not wait for it."""
        data_dir = data_dir or self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        config = self.root / f"{name}.yaml"
        node = {"node": {"name": name, "seed": seed if seed is not None else len(self.procs)}}
        write_config(config, data_dir, deep_merge(deep_merge(SWARM_NODE, node), extra or {}))
        log = data_dir / "node.log"
        process = start_node(["run", "--config", str(config)], log, nofile=nofile)
        proc = Proc(name, data_dir, log, config, process)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        alive = [p.process for p in self.procs] + self.others
        for process in alive:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in alive:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextlib.contextmanager
def cluster(root: Path) -> Iterator[Cluster]:
    c = Cluster(root)
    try:
        yield c
    finally:
        c.close()


def libp2p_addr(proc: Proc) -> str:
    info = proc.info
    if info is None:
        raise AssertionError(f"{proc.name} is not up")
    addrs = [a for a in info.listen_addrs if "/p2p/" in a]
    assert addrs, f"{proc.name} reports no libp2p address: {info}"
    return addrs[0]


def delivery_seconds(metrics_text: str) -> tuple[float, float]:
    """(count, mean seconds) of ``swarmrl_gossip_delivery_seconds`` in a scrape."""
    count = metric_value(metrics_text, "swarmrl_gossip_delivery_seconds_count") or 0.0
    total = metric_value(metrics_text, "swarmrl_gossip_delivery_seconds_sum") or 0.0
    return count, (total / count if count else float("nan"))


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


# ----------------------------------------------------------------------------- in-process peers (asyncio)

#: The task source every FAST node uses (built-in arithmetic 'add' with the default tasks seed and size).
_TASKS: tuple[str, str, dict[str, Any], int, int] = ("arithmetic", "add", {}, 1234, 1_000_000)


def task_source() -> Any:
    from swarmrl.tasks import build_source

    return build_source(*_TASKS)


def valid_group(index: int, answer: str | None = None) -> Any:
    """A group for task ``index`` that a FAST node can regenerate and accept (``answer`` tampers it)."""
    from swarmrl.protocol.types import Completion, PolicyInfo, RolloutGroup

    task = task_source().get(index)
    completions = [Completion(t) for t in (task.answer, "0", "1", f"{task.answer} {index}")]
    return RolloutGroup(
        task.ref,
        task.question,
        task.answer if answer is None else answer,
        completions,
        PolicyInfo("t", 0, "peer"),
    )


class Peer:
    """A swarm member inside the test process: real identity, real Libp2pTransport, the real receive path
    (``Swarm``), so it signs what it sends and judges what it receives exactly like a node."""

    def __init__(
        self,
        bootstrap: list[str],
        *,
        psk: bytes | None = None,
        allowlist: list[str] | None = None,
        swarm_id: str = "swarmrl-public",
        identity: Any = None,
    ) -> None:
        from swarmrl.config import NodeConfig
        from swarmrl.swarm.events import CountingEvents
        from swarmrl.swarm.identity import Identity
        from swarmrl.swarm.service import Swarm
        from swarmrl.swarm.transports.libp2p.transport import Libp2pTransport

        self.identity = identity or Identity.generate()
        self.events = CountingEvents()
        self.swarm_id = swarm_id
        self.transport = Libp2pTransport(
            self.identity.private_key_seed(), swarm_id, bootstrap=bootstrap, psk=psk, events=self.events
        )
        cfg = NodeConfig.model_validate(
            {
                "swarm": {
                    "transport": "libp2p",
                    "swarm_id": swarm_id,
                    "admission": {"allowlist": allowlist or []},
                }
            }
        )
        source = task_source()
        self.swarm = Swarm(cfg, self.identity, self.transport, lambda ref: _regen(source, ref), self.events)
        self._seq = 0

    @property
    def peer_id(self) -> str:
        return str(self.identity.peer_id_text)

    async def start(self) -> Peer:
        await self.swarm.start()
        return self

    def seal(self, groups: list[Any], *, swarm_id: str | None = None, seq: int | None = None) -> bytes:
        """A correctly signed envelope (with a fresh, increasing sequence number unless ``seq``)."""
        import time

        from swarmrl.protocol import envelope as wire

        self._seq = max(self._seq + 1, int(time.time() * 1_000_000))
        return wire.seal(
            self.identity,
            swarm_id or self.swarm_id,
            self._seq if seq is None else seq,
            wire.encode_batch(groups),
            int(time.time() * 1000),
        )

    async def send(self, data: bytes) -> None:
        await self.transport.publish(data)

    async def close(self) -> None:
        await self.swarm.close()


def _regen(source: Any, ref: Any) -> tuple[str, str]:
    from swarmrl.tasks.registry import regenerate

    return regenerate([source], ref)
