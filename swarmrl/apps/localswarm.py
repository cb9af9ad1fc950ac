"""``swarm-node local-swarm``: N real node processes on loopback, for demos and end-to-end tests.

Node 0 is the bootstrap. With libp2p the others join it through its multiaddr (``/p2p/<peer id>``
included) and gossipsub carries everything between all of them; with gRPC, which does not relay, each node
lists every earlier node as a static peer (a full mesh), so nodes start one after another. Every node
gets its own data directory ``DATA/node-<i>`` (log in ``node.log``, rotated by ``node.disk``; stdout and
stderr, where only errors before logging starts go, in ``node.stderr.log``), seed ``i``, and free ports (metrics,
control, swarm); the launcher learns the bound ports from each node's ``node.json``.

Cores: each node gets ``node.threads`` = its share of ``os.cpu_count()`` (at least 1; a ``--set
node.threads=...`` overrides it), and ``OMP_NUM_THREADS`` to match, so N nodes do not each spin on every core
(three nodes on 2 cores, each with all cores, made a 40-step warm start take minutes). The node itself splits
its share between training and its generation child (``ModelEngine``).

Start-up: a node may take long to load (a busy machine, a big model); it is given up on only when it makes no
progress (its log and stderr stop growing) for ``start_timeout_s``, not after a fixed time, so one slow node
does not stop a swarm whose nodes are all still coming up.

All nodes run in one process group of their own; a stop (SIGINT/SIGTERM to the launcher) sends SIGTERM to
that group, so each node finishes its round and checkpoints, and anything still alive after a grace period
gets SIGKILL. Nothing is left behind when the launcher returns.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from swarmrl.errors import NodeError
from swarmrl.node.runinfo import RunInfo, read_run_info, run_info_path

log = logging.getLogger(__name__)

Transport = Literal["libp2p", "grpc"]
#: How long one node may go without progress (its log growing) while loading its model and binding ports.
START_TIMEOUT_S = 180.0
#: The node's own log (rotated by ``node.disk``) and the file its stdout/stderr go to (start-up errors).
LOG_NAME = "node.log"
STDERR_NAME = "node.stderr.log"
#: How long nodes get to finish their round and checkpoint after SIGTERM before SIGKILL.
STOP_GRACE_S = 60.0


@dataclass(frozen=True)
class LocalSwarmSpec:
    """What to launch. ``sets`` are extra ``--set section.field=value`` overrides given to every node."""

    nodes: int
    data_dir: Path
    transport: Transport = "libp2p"
    rounds: int = 0
    config: Path | None = None
    sets: tuple[str, ...] = ()
    python: tuple[str, ...] = (sys.executable,)
    start_timeout_s: float = START_TIMEOUT_S

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 64:
            raise NodeError(f"--nodes must be between 1 and 64, not {self.nodes}")
        if self.transport not in ("libp2p", "grpc"):
            raise NodeError(f"--transport must be libp2p or grpc, not {self.transport!r}")
        if self.rounds < 0:
            raise NodeError("--rounds must be >= 0 (0 runs until stopped)")


@dataclass
class NodeProcess:
    """One launched node: its process, data directory, log file and (once up) its run info."""

    index: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]
    info: RunInfo | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / LOG_NAME

    def log_tail(self, lines: int = 15) -> str:
        """The last lines of the node's log, then of its stderr (where errors before logging end up)."""
        out: list[str] = []
        for path in (self.log_path, self.data_dir / STDERR_NAME):
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            out += text.splitlines()[-lines:]
        return "\n".join(out)


@dataclass
class LocalSwarm:
    """Starts, watches and stops the node processes of one local swarm."""

    spec: LocalSwarmSpec
    procs: list[NodeProcess] = field(default_factory=list)
    _pgid: int | None = None

    # ------------------------------------------------------------------------------------------ start
    def node_args(self, index: int, peers: Sequence[str]) -> list[str]:
        """Command line of node ``index``; ``peers`` are the addresses it joins (bootstrap/static peers)."""
        spec = self.spec
        args = [*spec.python, "-m", "swarmrl.cli", "run", "--data-dir", str(self._dir(index))]
        if spec.config is not None:
            args += ["--config", str(spec.config)]
        defaults = (
            f"node.name=node-{index}",
            f"node.seed={index}",
            "node.progress=plain",
            f"node.log_file={LOG_NAME}",
            f"node.threads={self.threads_per_node()}",
        )
        for s in defaults:
            args += ["--set", s]
        for s in spec.sets:
            args += ["--set", s]
        key = "swarm.bootstrap_peers" if spec.transport == "libp2p" else "swarm.grpc.static_peers"
        forced = [
            "node.control_port=0",
            f"swarm.transport={spec.transport}",
            "swarm.listen_port=0",
            f"{key}={json.dumps(list(peers))}",
        ]
        for s in forced:
            args += ["--set", s]
        return [*args, "--metrics-port", "0", "--rounds", str(spec.rounds)]

    def threads_per_node(self) -> int:
        """This machine's cores divided among the nodes (at least one each)."""
        return threads_per_node(self.spec.nodes, os.cpu_count() or 1)

    def _dir(self, index: int) -> Path:
        return self.spec.data_dir / f"node-{index}"

    def _launch(self, index: int, peers: Sequence[str]) -> NodeProcess:
        data_dir = self._dir(index)
        data_dir.mkdir(parents=True, exist_ok=True)
        run_info_path(data_dir).unlink(missing_ok=True)  # a stale file from an earlier run
        log_file = open(data_dir / STDERR_NAME, "ab")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items()}
        env["PYTHONUNBUFFERED"] = "1"
        if not any(s.startswith("node.threads=") for s in self.spec.sets):
            threads = str(self.threads_per_node())
            env["OMP_NUM_THREADS"] = threads
            env["MKL_NUM_THREADS"] = threads
        process = subprocess.Popen(
            self.node_args(index, peers),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            process_group=0 if self._pgid is None else self._pgid,
        )
        if self._pgid is None:
            self._pgid = process.pid
        proc = NodeProcess(index, data_dir, process, log_file)
        self.procs.append(proc)
        return proc

    def _await_up(self, procs: Sequence[NodeProcess], stopping: Callable[[], bool]) -> None:
        """Wait until every node of ``procs`` has written its node.json (all ports bound).

        A node is given up on when it exits, or when its log and stderr have not grown for
        ``start_timeout_s`` (stuck); a slow node that keeps logging progress is waited for.
        """
        timeout = self.spec.start_timeout_s
        now = time.monotonic()
        progress = {proc.index: (_log_size(proc), now) for proc in procs}
        pending = list(procs)
        while pending:
            now = time.monotonic()
            for proc in list(pending):
                code = proc.process.poll()
                if code is not None:
                    raise NodeError(
                        f"node {proc.index} exited with code {code} during start-up; "
                        f"its log ({proc.log_path}) ends with:\n{proc.log_tail()}"
                    )
                info = _try_read(proc.data_dir)
                if info is not None and info.pid == proc.process.pid:
                    proc.info = info
                    pending.remove(proc)
                    continue
                size = _log_size(proc)
                last_size, since = progress[proc.index]
                if size != last_size:
                    progress[proc.index] = (size, now)
                elif now - since > timeout:
                    raise NodeError(
                        f"node {proc.index} made no start-up progress (log unchanged) for {timeout:.0f}s; "
                        f"its log ({proc.log_path}) ends with:\n{proc.log_tail()}"
                    )
            if not pending:
                return
            if stopping():
                raise NodeError("stopped during start-up")
            time.sleep(0.1)

    def start(self, stopping: Callable[[], bool] = lambda: False) -> list[NodeProcess]:
        """Launch every node and wait until all are up; on failure, stop what was started and raise."""
        try:
            first = self._launch(0, [])
            self._await_up([first], stopping)
            boot = _join_addr(first, self.spec.transport)
            if self.spec.transport == "libp2p":
                rest = [self._launch(i, [boot]) for i in range(1, self.spec.nodes)]
                self._await_up(rest, stopping)
            else:
                known = [boot]
                for i in range(1, self.spec.nodes):
                    proc = self._launch(i, list(known))
                    self._await_up([proc], stopping)
                    known.append(_join_addr(proc, "grpc"))
        except BaseException:
            self.stop()
            raise
        return self.procs

    # ------------------------------------------------------------------------------------------- run
    def wait(self, stopping: Callable[[], bool], on_exit: Callable[[NodeProcess, int], None]) -> int:
        """Wait until every node has exited (``--rounds``) or ``stopping()``; then stop the rest.

        Returns 0 when every node exited cleanly (or on a requested stop), else the first non-zero code.
        """
        reported: set[int] = set()
        worst = 0
        while not stopping():
            alive = 0
            for proc in self.procs:
                code = proc.process.poll()
                if code is None:
                    alive += 1
                elif proc.index not in reported:
                    reported.add(proc.index)
                    on_exit(proc, code)
                    worst = worst or code
            if not alive:
                self.stop()
                return worst
            time.sleep(0.2)
        self.stop()
        return worst

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the group, wait up to ``grace_s``, then SIGKILL what is left; close the logs."""
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("node %d did not stop within %.0fs; killing it", proc.index, grace_s)
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.process.wait(timeout=5)
            proc.log_file.close()

    def kill_now(self) -> None:
        """SIGKILL the whole group (a second Ctrl-C)."""
        if self._pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._pgid, signal.SIGKILL)


def threads_per_node(nodes: int, cores: int) -> int:
    """``cores`` divided among ``nodes`` node processes, at least one thread each."""
    return max(1, cores // max(1, nodes))


def _log_size(proc: NodeProcess) -> int:
    """Bytes written so far to the node's log and stderr (start-up progress)."""
    total = 0
    for path in (proc.log_path, proc.data_dir / STDERR_NAME):
        with contextlib.suppress(OSError):
            total += path.stat().st_size
    return total


def _try_read(data_dir: Path) -> RunInfo | None:
    try:
        return read_run_info(data_dir)
    except NodeError:
        return None


def _join_addr(proc: NodeProcess, transport: Transport) -> str:
    """The address other nodes join ``proc`` at: a multiaddr with /p2p/ for libp2p, host:port for gRPC."""
    info = proc.info
    addrs = info.listen_addrs if info is not None else []
    if transport == "libp2p":
        addrs = [a for a in addrs if "/p2p/" in a]
    if not addrs:
        raise NodeError(f"node {proc.index} reported no {transport} listen address; see {proc.log_path}")
    return addrs[0]


def run_local_swarm(spec: LocalSwarmSpec, out: Callable[[str], None], err: Callable[[str], None]) -> int:
    """The ``local-swarm`` command: start, print one metrics line per node, wait, stop on a signal."""
    swarm = LocalSwarm(spec)
    signals = {"count": 0}

    def on_signal(signum: int, frame: object) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            swarm.kill_now()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        procs = swarm.start(stopping=lambda: signals["count"] > 0)
        for proc in procs:
            url = proc.info.metrics_url if proc.info is not None else ""
            out(f"node {proc.index} metrics {url}")
        for proc in procs:
            control = proc.info.control if proc.info is not None else ""
            err(f"node {proc.index}: control {control or '-'}, log {proc.log_path}")
        err("local swarm running; Ctrl-C stops every node")

        def on_exit(proc: NodeProcess, code: int) -> None:
            if code:
                err(f"node {proc.index} exited with code {code}; its log ends with:\n{proc.log_tail()}")
            else:
                err(f"node {proc.index} finished")

        code = swarm.wait(lambda: signals["count"] > 0, on_exit)
        if signals["count"]:
            err("stopped every node")
        return code
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
