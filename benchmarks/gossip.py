"""Our gossip (libp2p transport behind the real ``Swarm``) against hivemind's DHT, side by side in one run.

For each N in ``--nodes`` and each payload in ``--payloads`` (bytes of one signed envelope), both systems run
the same pattern on loopback, one OS process per node:

* **round**: every node publishes one batch; the round lasts from the coordinator's "go" until every node
  holds all N-1 others' batches (median and p90 over ``--rounds``, after warm-up rounds);
* **sustained**: N * rounds / wall time of the back-to-back timed rounds (closed loop), and a **burst**:
  every node publishes ``--burst`` batches at once; batches/s = N * burst / time until every node holds all
  others' batches (open loop; losses are reported as the delivered fraction);
* per node: CPU seconds over the phase (psutil, the node's whole process tree) and peak memory.

Ours: ``python -m swarmrl.apps.gossip_node --control stdio`` per node (torch-free: the worker refuses to run
with torch imported and reports it), real ed25519-signed envelopes carrying one RolloutGroup each, full
receive path (signature, replay, rate, task regeneration), star bootstrap (all dial node 0; gossipsub meshes
over those links). Publish pacing and per-peer rate limits are raised for the benchmark (see ``OUR_SETTINGS``).

hivemind 1.1.12: ``benchmarks/_gossip_hivemind.py`` per node, DHT bootstrapped from node 0, ``store(key=round,
subkey=peer id)`` then ``get(key, latest=True)`` every ``--hm-poll-ms`` until N subkeys are visible, with the
pipe fix of ``shared/BASELINES.md`` applied (``os.set_blocking(fd, True)`` in the DHT child).

Memory per node: ours = RSS of the node process (+ children, none); hivemind = RSS of the Python parent +
USS of its forked DHT child (pages shared with the parent are not counted twice) + RSS of its other
child processes (p2pd, and torch's torch_shm_manager, which importing hivemind starts). Peaks are
sampled every ``--sample-s`` seconds; ours is also checked against the worker's own ``ru_maxrss``.

Set-up from a clean checkout: ``make install && .venv/bin/python benchmarks/gossip.py``. hivemind==1.1.12 is
installed into the running venv when missing and it replaces nothing installed there (checked with
``pip install --dry-run``); otherwise a separate ``.venv-bench`` (torch 2.13.0 + hivemind) is created and
used for the hivemind side. ``--hivemind-python PATH`` picks an interpreter explicitly; ``--no-hivemind``
runs our side only.

Extra side, ``ours-grpc`` (``--systems ours,ours-grpc,hivemind``): the same gossip-only node with the gRPC
transport (static peers, full mesh: node i dials nodes 0..i-1; no relaying), to show what the swarm layer
costs without py-libp2p. The issue's targets are judged per transport under ``targets``.

Sustained batches/s is closed-loop (N batches per completed round, rounds back to back); the burst phase
is open-loop and reports the delivered fraction when batches are lost.

Usage: ``python benchmarks/gossip.py [--nodes 2,4,8] [--payloads 1024,65536] [--rounds K] [--burst B]
[--systems ours,ours-grpc,hivemind] [--out FILE.json] [--quick] [--no-hivemind]``. Prints a markdown table
and the JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
HIVEMIND_VERSION = "1.1.12"
BENCH_VENV = REPO / ".venv-bench"
SWARM_ID = "gossip-bench"
#: "ours" is the libp2p transport (the issue's subject); "ours-grpc" the static-peer gRPC transport (extra).
OUR_SYSTEMS = ("ours", "ours-grpc")
ALL_SYSTEMS = (*OUR_SYSTEMS, "hivemind")

#: Config overrides for our nodes: the Swarm's publish pacing and per-peer rate limits above what the
#: benchmark sends (the defaults, 5 envelopes/s, are production throttles, not transport limits; a 45/s
#: pacing alone put a ~22 ms floor under back-to-back rounds), nothing cached on disk. The libp2p transport
#: still paces its own publishes at 50/s (its constructor default, below gossipsub's spam limit).
OUR_SETTINGS = {
    "swarm.transport": "libp2p",
    "swarm.swarm_id": SWARM_ID,
    "swarm.max_publish_per_second": 1000,
    "swarm.rate.messages_per_second": 1000,
    "swarm.rate.burst": 1000,
    "swarm.peer_cache_file": "",
    "swarm.admission.replay_state_file": "",
    "sampling.strategy": "uniform",
    # the benchmark measures all-to-all dissemination (every node holds all others' batches): unbounded
    "swarm.ingress_groups_per_round": 0,
}


# ------------------------------------------------------------------------------------------- workers


class WorkerError(RuntimeError):
    """A node process died, answered an error, or did not answer in time."""


@dataclass
class Worker:
    index: int
    proc: asyncio.subprocess.Process
    log_path: Path
    info: dict[str, Any] = field(default_factory=dict)
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    reader_task: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def start_reading(self) -> None:
        self.reader_task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        stdout = self.proc.stdout
        if stdout is None:
            return
        while True:
            line = await stdout.readline()
            if not line:
                await self.queue.put({"event": "eof"})
                return
            try:
                msg = json.loads(line)
            except ValueError:
                continue  # stray output from a library
            if isinstance(msg, dict):
                await self.queue.put(msg)

    def send(self, **cmd: Any) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            raise WorkerError(f"node {self.index}: stdin closed")
        stdin.write((json.dumps(cmd) + "\n").encode())

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerError(
                    f"node {self.index}: no '{event}' within {timeout:.0f}s (log: {self.log_path})"
                )
            try:
                msg = await asyncio.wait_for(self.queue.get(), left)
            except TimeoutError:
                continue
            if msg.get("event") == event:
                return msg
            if msg.get("event") in ("eof", "error"):
                raise WorkerError(f"node {self.index}: {msg} (log: {self.log_path}): {_tail(self.log_path)}")


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


async def _spawn(index: int, argv: list[str], log_dir: Path, env: dict[str, str]) -> Worker:
    log_path = log_dir / f"node{index}.log"
    log_file = open(log_path, "wb")  # noqa: SIM115 - handed to the child; closed when this process ends
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log_file,
        cwd=str(REPO),
        env=env,
        limit=1 << 20,
    )
    worker = Worker(index, proc, log_path)
    worker.start_reading()
    return worker


# ------------------------------------------------------------------------------------------ memory


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def node_memory(pid: int) -> int:
    """Bytes of memory one node uses: root RSS, forked Python children by USS, other children by RSS."""
    procs = _tree(pid)
    if not procs:
        return 0
    total = 0
    try:
        root_exe = procs[0].exe()
    except psutil.Error:
        root_exe = ""
    for i, proc in enumerate(procs):
        try:
            if i > 0 and root_exe and proc.exe() == root_exe:
                total += proc.memory_full_info().uss  # forked: shares the parent's pages copy-on-write
            else:
                total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def node_cpu(pid: int) -> float:
    """User + system CPU seconds of a node's process tree (live processes)."""
    total = 0.0
    for proc in _tree(pid):
        try:
            t = proc.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            continue
    return total


def node_processes(pid: int) -> list[str]:
    out = []
    for proc in _tree(pid):
        try:
            out.append(proc.name())
        except psutil.Error:
            continue
    return out


class MemorySampler:
    """A thread sampling every node's memory; ``peaks()`` since the last ``reset()``."""

    def __init__(self, pids: list[int], interval_s: float) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self._peaks = [0] * len(pids)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)

    def sample(self) -> list[int]:
        values = [node_memory(pid) for pid in self.pids]
        with self._lock:
            self._peaks = [max(a, b) for a, b in zip(self._peaks, values, strict=True)]
        return values

    def reset(self) -> None:
        with self._lock:
            self._peaks = [0] * len(self.pids)

    def peaks(self) -> list[int]:
        self.sample()
        with self._lock:
            return list(self._peaks)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()


# ----------------------------------------------------------------------------------------- clusters


class Cluster:
    """N node processes of one system, driven over their stdin/stdout."""

    def __init__(self, system: str, n: int, args: argparse.Namespace, work: Path) -> None:
        self.system = system
        self.n = n
        self.args = args
        self.work = work / f"{system}-n{n}"
        self.work.mkdir(parents=True, exist_ok=True)
        self.workers: list[Worker] = []
        self.sampler: MemorySampler | None = None
        self.tag = 0
        self.startup_s = 0.0

    def _argv(self, index: int, bootstrap: list[str]) -> list[str]:
        if self.system in OUR_SYSTEMS:
            argv = [sys.executable, "-m", "swarmrl.apps.gossip_node", "--control", "stdio"]
            argv += ["--data-dir", str(self.work / f"node{index}"), "--set", f"node.seed={index}"]
            for key, value in OUR_SETTINGS.items():
                argv += ["--set", f"{key}={json.dumps(value)}"]
            if self.system == "ours-grpc":
                argv += ["--set", "swarm.transport=grpc"]
                argv += ["--set", f"swarm.grpc.static_peers={json.dumps(bootstrap)}"]
            else:
                argv += ["--set", f"swarm.bootstrap_peers={json.dumps(bootstrap)}"]
            return argv
        argv = [self.args.hivemind_python, str(REPO / "benchmarks" / "_gossip_hivemind.py")]
        argv += ["--poll-ms", str(self.args.hm_poll_ms)]
        for addr in bootstrap:
            argv += ["--initial-peer", addr]
        return argv

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        env.setdefault("OMP_NUM_THREADS", "1")  # hivemind imports torch; keep its thread pools small
        env.setdefault("MKL_NUM_THREADS", "1")
        return env

    async def start(self) -> None:
        t0 = time.monotonic()
        env = self._env()
        first = await _spawn(0, self._argv(0, []), self.work, env)
        first.info = await first.expect("ready", 120)
        self.workers.append(first)
        if self.system == "ours-grpc":
            # gRPC links are direct (no relaying): a full mesh, node i dials nodes 0..i-1
            for i in range(1, self.n):
                dial = [str(w.info["addrs"][0]) for w in self.workers]
                worker = await _spawn(i, self._argv(i, dial), self.work, env)
                worker.info = await worker.expect("ready", 180)
                self.workers.append(worker)
        else:
            # star bootstrap: everyone dials node 0 (libp2p gossipsub relays; hivemind's DHT fills its tables)
            boot = [a for a in first.info["addrs"] if "/127.0.0.1/" in a][:1] or first.info["addrs"][:1]
            rest = [await _spawn(i, self._argv(i, boot), self.work, env) for i in range(1, self.n)]
            self.workers.extend(rest)
            for worker in rest:
                worker.info = await worker.expect("ready", 180)
        for i, worker in enumerate(self.workers):
            full = i == 0 or self.system == "ours-grpc"
            worker.send(cmd="wait_peers", count=self.n - 1 if full else 1, timeout_s=60)
        for worker in self.workers:
            if not (await worker.expect("peers", 90)).get("ok"):
                raise WorkerError(f"{self.system} node {worker.index} did not connect")
        self.startup_s = time.monotonic() - t0
        self.sampler = MemorySampler([w.pid for w in self.workers], self.args.sample_s)
        self.sampler.start()

    async def round(self, envelope_bytes: int, batches: int, timeout_s: float) -> dict[str, Any]:
        """One round: every node publishes ``batches``; returns elapsed seconds until all hold everything."""
        self.tag += 1
        expect = (self.n - 1) * batches
        go = time.monotonic()
        for worker in self.workers:
            worker.send(
                cmd="publish",
                tag=self.tag,
                batches=batches,
                envelope_bytes=envelope_bytes,
                expect=expect,
                nodes=self.n,
                timeout_s=timeout_s,
            )
        replies = [await w.expect("have", timeout_s + 30) for w in self.workers]
        ok = all(r.get("ok") for r in replies)
        return {
            "ok": ok,
            "seconds": max(float(r["t"]) for r in replies) - go,
            "received": [int(r.get("received", 0)) for r in replies],
        }

    def cpu(self) -> list[float]:
        return [node_cpu(w.pid) for w in self.workers]

    async def stats(self) -> list[dict[str, Any]]:
        for worker in self.workers:
            worker.send(cmd="stats")
        return [await w.expect("stats", 30) for w in self.workers]

    def kill(self) -> None:
        """Kill every node process tree at once (on errors and interrupts)."""
        if self.sampler is not None:
            self.sampler.stop()
        for worker in self.workers:
            for proc in reversed(_tree(worker.pid)):
                with contextlib.suppress(psutil.Error):
                    proc.kill()

    async def stop(self) -> list[dict[str, Any]]:
        if self.sampler is not None:
            self.sampler.stop()
        byes: list[dict[str, Any]] = []
        for worker in self.workers:
            with contextlib.suppress(WorkerError, ConnectionError):
                worker.send(cmd="quit")
        for worker in self.workers:
            try:
                byes.append(await worker.expect("bye", 20))
            except WorkerError:
                byes.append({})
        for worker in self.workers:
            try:
                await asyncio.wait_for(worker.proc.wait(), 20)
            except TimeoutError:
                for proc in reversed(_tree(worker.pid)):
                    with contextlib.suppress(psutil.Error):
                        proc.kill()
                await worker.proc.wait()
            if worker.reader_task is not None:
                worker.reader_task.cancel()
        return byes


# ------------------------------------------------------------------------------------------- phases


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


async def run_phase(cluster: Cluster, envelope_bytes: int, args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up, K timed rounds and one burst at one payload size on a running cluster."""
    sampler = cluster.sampler
    assert sampler is not None
    for _ in range(args.warmup):
        await cluster.round(envelope_bytes, 1, args.round_timeout)
    sampler.reset()
    cpu0 = cluster.cpu()
    load0 = os.getloadavg()[0]
    times: list[float] = []
    failed = 0
    started = time.monotonic()
    for _ in range(args.rounds):
        result = await cluster.round(envelope_bytes, 1, args.round_timeout)
        if result["ok"]:
            times.append(result["seconds"])
        else:
            failed += 1
    rounds_wall = time.monotonic() - started
    burst = await cluster.round(envelope_bytes, args.burst, args.burst_timeout)
    cpu1 = cluster.cpu()
    peaks = sampler.peaks()
    cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    return {
        "system": cluster.system,
        "nodes": cluster.n,
        "payload_bytes": envelope_bytes,
        "rounds": args.rounds,
        "rounds_failed": failed,
        "round_ms_median": 1000 * statistics.median(times) if times else None,
        "round_ms_p90": 1000 * _percentile(times, 0.9) if times else None,
        "round_ms_all": [round(1000 * t, 2) for t in times],
        "rounds_per_s_back_to_back": args.rounds / rounds_wall if rounds_wall > 0 else None,
        # closed loop: every batch of a round reached every node before the next round started
        "sustained_batches_per_s": cluster.n * len(times) / rounds_wall
        if rounds_wall > 0 and times
        else None,
        # open loop: every node publishes `burst` batches at once (losses show as burst_ok false)
        "burst_batches_per_node": args.burst,
        "burst_ok": burst["ok"],
        "burst_seconds": burst["seconds"],
        "burst_delivered_fraction": sum(burst["received"]) / (cluster.n * (cluster.n - 1) * args.burst),
        "burst_batches_per_s": cluster.n * args.burst / burst["seconds"] if burst["ok"] else None,
        "cpu_s_per_node_mean": statistics.mean(cpu),
        "cpu_s_per_node_max": max(cpu),
        "cpu_s_per_node": [round(c, 3) for c in cpu],
        "peak_mem_mb_per_node_mean": statistics.mean(peaks) / 2**20,
        "peak_mem_mb_per_node_max": max(peaks) / 2**20,
        "loadavg_1m_before": load0,
        "loadavg_1m_after": os.getloadavg()[0],
    }


async def run_system(system: str, n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cluster = Cluster(system, n, args, work)
    phases: list[dict[str, Any]] = []
    idle: list[int] = []
    try:
        await cluster.start()
        assert cluster.sampler is not None
        idle = cluster.sampler.sample()
        for payload in args.payload_list:
            phase = await run_phase(cluster, payload, args)
            phase["startup_s"] = cluster.startup_s
            phase["idle_mem_mb_per_node_mean"] = statistics.mean(idle) / 2**20
            phases.append(phase)
            _progress(phase)
        stats = await cluster.stats()
        procs = node_processes(cluster.workers[0].pid)
    except BaseException:  # includes Ctrl-C and cancellation: never leave node processes behind
        cluster.kill()
        raise
    byes = await cluster.stop()
    worker_peak = [int(b.get("peak_rss_bytes", 0)) for b in byes if b]
    torch_flags = [bool(w.info.get("torch_loaded")) for w in cluster.workers]
    for phase in phases:
        phase["worker_torch_loaded"] = any(torch_flags)
        phase["processes_per_node"] = procs
        if system in OUR_SYSTEMS and worker_peak:
            # the sampler can miss a short spike; the worker's own ru_maxrss cannot (it has no children)
            phase["worker_ru_maxrss_mb_max"] = max(worker_peak) / 2**20
    return {"phases": phases, "worker_stats": stats, "torch_loaded": torch_flags}


def _progress(phase: dict[str, Any]) -> None:
    med = phase["round_ms_median"]
    print(
        f"# {phase['system']:8s} N={phase['nodes']} {phase['payload_bytes']:>6d} B: round median "
        f"{med if med is None else round(med, 1)} ms, p90 {_fmt(phase['round_ms_p90'])} ms, "
        f"{_fmt(phase['sustained_batches_per_s'])} batches/s, cpu {phase['cpu_s_per_node_mean']:.2f} s/node, "
        f"peak {phase['peak_mem_mb_per_node_mean']:.0f} MB/node, failed {phase['rounds_failed']}",
        file=sys.stderr,
        flush=True,
    )


# -------------------------------------------------------------------------------------- comparison


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ratios(ours: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """hivemind / ours for times, memory and CPU; ours / hivemind for throughput (higher = we are better)."""
    index = {(p["nodes"], p["payload_bytes"]): p for p in theirs}
    out = []
    for p in ours:
        h = index.get((p["nodes"], p["payload_bytes"]))
        if h is None:
            continue

        def div(a: Any, b: Any) -> float | None:
            return a / b if a is not None and b else None

        out.append(
            {
                "system": p["system"],
                "nodes": p["nodes"],
                "payload_bytes": p["payload_bytes"],
                "round_speedup_median": div(h["round_ms_median"], p["round_ms_median"]),
                "round_speedup_p90": div(h["round_ms_p90"], p["round_ms_p90"]),
                "throughput_ratio": div(p["sustained_batches_per_s"], h["sustained_batches_per_s"]),
                "cpu_ratio_hivemind_over_ours": div(h["cpu_s_per_node_mean"], p["cpu_s_per_node_mean"]),
                "memory_ratio_ours_over_hivemind": div(
                    p["peak_mem_mb_per_node_mean"], h["peak_mem_mb_per_node_mean"]
                ),
            }
        )
    return out


def targets(all_ratios: list[dict[str, Any]], system: str) -> dict[str, Any]:
    """The issue's targets for one of our transports: N=8 round >= 3x faster, memory < half."""
    rat = [r for r in all_ratios if r["system"] == system]
    at8 = [r for r in rat if r["nodes"] == 8]
    speed = [r["round_speedup_median"] for r in at8]
    mem = [r["memory_ratio_ours_over_hivemind"] for r in rat]
    return {
        "round_speedup_at_8_min": min(speed) if speed and None not in speed else None,
        "round_speedup_target": 3.0,
        "round_speedup_met": bool(speed) and None not in speed and min(speed) >= 3.0,
        "memory_ratio_max": max(mem) if mem and None not in mem else None,
        "memory_ratio_target": 0.5,
        "memory_met": bool(mem) and None not in mem and max(mem) < 0.5,
    }


def markdown(result: dict[str, Any]) -> str:
    rows = [
        "| system | N | payload | round median ms | round p90 ms | sustained batches/s | burst batches/s "
        "| CPU s/node | peak MB/node | failed rounds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in sorted(
        [p for system in ALL_SYSTEMS for p in result.get(system, [])],
        key=lambda p: (p["nodes"], p["payload_bytes"], ALL_SYSTEMS.index(p["system"])),
    ):
        lost = "" if p["burst_ok"] else f" (burst lost {1 - p['burst_delivered_fraction']:.0%})"
        rows.append(
            f"| {p['system']} | {p['nodes']} | {p['payload_bytes'] // 1024} KiB | {_fmt(p['round_ms_median'])} | "
            f"{_fmt(p['round_ms_p90'])} | {_fmt(p['sustained_batches_per_s'])} | {_fmt(p['burst_batches_per_s'])} | "
            f"{_fmt(p['cpu_s_per_node_mean'], 2)} | {_fmt(p['peak_mem_mb_per_node_mean'], 0)} | "
            f"{p['rounds_failed']}/{p['rounds']}{lost} |"
        )
    if result["ratios"]:
        rows += [
            "",
            "hivemind / ours (>1: ours faster, cheaper) except memory (ours / hivemind, <0.5 is the target):",
            "",
            "| ours | N | payload | round speed-up (median) | speed-up (p90) | sustained throughput x "
            "| CPU x | memory ours/hivemind |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in result["ratios"]:
            rows.append(
                f"| {r['system']} | {r['nodes']} | {r['payload_bytes'] // 1024} KiB | {_fmt(r['round_speedup_median'], 2)} | "
                f"{_fmt(r['round_speedup_p90'], 2)} | {_fmt(r['throughput_ratio'], 2)} | "
                f"{_fmt(r['cpu_ratio_hivemind_over_ours'], 2)} | {_fmt(r['memory_ratio_ours_over_hivemind'], 2)} |"
            )
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------- set-up


def _has_hivemind(python: str) -> bool:
    probe = f"import hivemind, sys; sys.exit(0 if hivemind.__version__ == '{HIVEMIND_VERSION}' else 1)"
    return subprocess.run([python, "-c", probe], capture_output=True, timeout=120).returncode == 0


def _would_replace(python: str) -> list[str]:
    """Installed packages that ``pip install hivemind==X`` would change in ``python``'s environment."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        proc = subprocess.run(
            [
                python,
                "-m",
                "pip",
                "install",
                "-q",
                "--dry-run",
                "--report",
                report.name,
                f"hivemind=={HIVEMIND_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode != 0:
            return [f"(pip dry-run failed: {proc.stderr.strip()[-300:]})"]
        planned = json.loads(Path(report.name).read_text()).get("install", [])
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, timeout=120
    )
    installed = {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listed.stdout or "[]")}
    changed = []
    for item in planned:
        meta = item.get("metadata", {})
        name = str(meta.get("name", "")).lower().replace("_", "-")
        if name in installed and installed[name] != meta.get("version"):
            changed.append(f"{name} {installed[name]} -> {meta.get('version')}")
    return changed


def ensure_hivemind(args: argparse.Namespace) -> str:
    """An interpreter with hivemind==1.1.12: the given one, this venv, or a separate .venv-bench."""
    if args.hivemind_python:
        if not _has_hivemind(args.hivemind_python):
            raise SystemExit(f"{args.hivemind_python} has no hivemind=={HIVEMIND_VERSION}")
        return str(args.hivemind_python)
    if _has_hivemind(sys.executable):
        return sys.executable
    bench_python = BENCH_VENV / "bin" / "python"
    if bench_python.exists() and _has_hivemind(str(bench_python)):
        return str(bench_python)
    changes = _would_replace(sys.executable)
    if not changes:
        print(
            f"# installing hivemind=={HIVEMIND_VERSION} into {sys.prefix} (replaces nothing)", file=sys.stderr
        )
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", f"hivemind=={HIVEMIND_VERSION}"], check=True
        )
        return sys.executable
    print(f"# hivemind would change {changes}; using a separate {BENCH_VENV}", file=sys.stderr)
    base = shutil.which("python3.11") or sys.executable
    subprocess.run([base, "-m", "venv", str(BENCH_VENV)], check=True)
    pip = [str(bench_python), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, f"hivemind=={HIVEMIND_VERSION}", "psutil"], check=True)
    return str(bench_python)


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", default="2,4,8", help="comma-separated node counts")
    p.add_argument("--payloads", default="1024,65536", help="comma-separated envelope sizes in bytes")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds per (N, payload)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--burst", type=int, default=5, help="batches per node in the burst phase")
    p.add_argument(
        "--round-timeout", type=float, default=30.0, help="seconds before a round counts as failed"
    )
    p.add_argument(
        "--burst-timeout", type=float, default=20.0, help="seconds before a burst counts as failed"
    )
    p.add_argument(
        "--systems", default="ours,ours-grpc,hivemind", help="which sides to run: ours, hivemind or both"
    )
    p.add_argument("--hm-poll-ms", type=float, default=5.0, help="hivemind: pause between get() polls")
    p.add_argument("--sample-s", type=float, default=0.5, help="memory sampling interval")
    p.add_argument("--out", type=Path, default=None, help="write the JSON result here too")
    p.add_argument("--quick", action="store_true", help="smoke test: N=2, 3 rounds, burst 4")
    p.add_argument("--no-hivemind", action="store_true", help="run our side only")
    p.add_argument("--hivemind-python", default=None, help="interpreter with hivemind==1.1.12")
    args = p.parse_args(argv)
    if args.quick:
        args.nodes, args.rounds, args.warmup, args.burst = "2", 3, 1, 4
    args.node_list = [int(x) for x in str(args.nodes).split(",") if x.strip()]
    args.system_list = [x.strip() for x in str(args.systems).split(",") if x.strip()]
    if args.no_hivemind:
        args.system_list = [x for x in args.system_list if x != "hivemind"]
    if not args.system_list or set(args.system_list) - set(ALL_SYSTEMS):
        p.error(f"--systems takes a comma-separated subset of {','.join(ALL_SYSTEMS)}")
    args.no_hivemind = "hivemind" not in args.system_list
    args.payload_list = [int(x) for x in str(args.payloads).split(",") if x.strip()]
    if not args.node_list or min(args.node_list) < 2 or not args.payload_list or min(args.payload_list) < 512:
        p.error("need node counts >= 2 and payloads >= 512 bytes")
    if args.rounds < 1 or args.burst < 1:
        p.error("--rounds and --burst must be >= 1")
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    systems = args.system_list
    result: dict[str, Any] = {
        "meta": {
            "started_unix": time.time(),
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "loadavg_at_start": os.getloadavg(),
            "args": {
                k: v for k, v in vars(args).items() if isinstance(v, int | float | str | list | type(None))
            },
            "our_settings": OUR_SETTINGS,
            "hivemind_version": None if args.no_hivemind else HIVEMIND_VERSION,
            "hivemind_pipe_fix": None if args.no_hivemind else "os.set_blocking(fd, True) in the DHT child",
            "hivemind_python": args.hivemind_python,
            "memory_rule": "ours: node process RSS; hivemind: parent RSS + forked DHT child USS + p2pd RSS",
        },
        **{system: [] for system in ALL_SYSTEMS},
        "worker_stats": {},
    }
    with tempfile.TemporaryDirectory(prefix="gossip-bench-") as tmp:
        work = Path(tmp)
        for n in args.node_list:
            for system in systems:
                out = await run_system(system, n, args, work)
                result[system].extend(out["phases"])
                result["worker_stats"][f"{system}-n{n}"] = out["worker_stats"]
    result["ratios"] = [r for system in OUR_SYSTEMS for r in ratios(result[system], result["hivemind"])]
    result["targets"] = {
        system: targets(result["ratios"], system)
        for system in OUR_SYSTEMS
        if any(r["system"] == system for r in result["ratios"])
    }
    result["meta"]["loadavg_at_end"] = os.getloadavg()
    result["meta"]["wall_s"] = time.time() - result["meta"]["started_unix"]
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_hivemind:
        args.hivemind_python = ensure_hivemind(args)
    result = asyncio.run(run(args))
    table = markdown(result)
    result["markdown"] = table
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(table)
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
