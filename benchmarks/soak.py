"""Soak: a local swarm for many rounds; resident memory of every process and data-directory size over time.

Starts ``swarm-node local-swarm``'s own launcher (``swarmrl.apps.localswarm.LocalSwarm``: N real node processes
on loopback libp2p, each with its generation child) for ``--rounds`` rounds per node, with small disk caps
(``node.disk.*``) so that rotation happens many times during the run. Every ``--every`` seconds it scrapes each
node's ``/metrics`` for ``swarmrl_round`` and ``swarmrl_process_resident_memory_bytes{process=node|generation}``
(the node reports its own RSS and its child's, by pid) and measures each node's data directory: the capped files
(journal, rollouts, node log, with their rotated copies) against their caps, and the whole directory.

Result: per process, RSS after warm-up (samples taken once the node ran ``--warmup`` x ``--rounds`` rounds in
this soak; a soak on an existing data directory resumes every node from its checkpoint): min,
max, spread ``(max - min) / min`` and drift ``(last - first) / first``; ``pass`` when every spread is within
``--tolerance`` (default 5%) and every capped file kind stayed under its cap at every sample. Prints the series
(JSON) and a markdown table; the JSON is rewritten after every sample (``--out``), so a run stopped early
(Ctrl-C, or the time budget) still leaves its series and the rounds reached.

Usage: ``python benchmarks/soak.py [--nodes 3] [--rounds 20000] [--every 30] [--out FILE.json] [--tiny]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from swarmrl.apps.localswarm import LocalSwarm, LocalSwarmSpec

MIB = 1024 * 1024
#: Small caps (MiB, rotated files kept) so that a soak rotates every file many times.
CAPS = {"journal": (1.0, 1), "rollouts": (2.0, 1), "log": (0.5, 1)}
FILES = {"journal": "journal.log", "rollouts": "rollouts.log", "log": "node.log"}
#: A smaller embedded model for a faster soak (``--tiny``): the memory behaviour under test is the node's.
TINY = (
    "model.tiny.hidden_size=32",
    "model.tiny.layers=1",
    "model.tiny.heads=2",
    "model.tiny.intermediate_size=64",
    "model.tiny.warmstart_steps=10",
)
METRIC_RE = re.compile(r'^swarmrl_process_resident_memory_bytes\{process="(\w+)"\} (\S+)$', re.M)
ROUND_RE = re.compile(r"^swarmrl_round (\S+)$", re.M)


def cap_sets() -> list[str]:
    sets = []
    for kind, (mb, keep) in CAPS.items():
        sets += [f"node.disk.{kind}_max_mb={mb}", f"node.disk.{kind}_keep={keep}"]
    return sets


def cap_bytes(kind: str) -> int:
    """What a capped file kind may use: ``max_mb * (1 + keep)`` plus one record (rotation is after a write)."""
    mb, keep = CAPS[kind]
    return int(mb * MIB * (1 + keep)) + 256 * 1024


def scrape(url: str) -> tuple[int, dict[str, float]]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode()
    m = ROUND_RE.search(text)
    rss = {name: float(v) for name, v in METRIC_RE.findall(text)}
    return (int(float(m.group(1))) if m else 0), rss


def dir_sizes(data_dir: Path) -> dict[str, int]:
    out = {kind: 0 for kind in FILES}
    total = 0
    # os.walk skips a directory removed while walking (an old checkpoint), where Path.rglob raises
    for root, _dirs, names in os.walk(data_dir, onerror=lambda _exc: None):
        for fname in names:
            path = Path(root) / fname
            try:
                size = path.stat().st_size
            except FileNotFoundError:  # a checkpoint or rotated file removed while walking
                continue
            total += size
            for kind, name in FILES.items():
                ours = path.name == name or (
                    path.name.startswith(name + ".") and path.name[len(name) + 1 :].isdigit()
                )
                if path.parent == data_dir and ours:
                    out[kind] += size
    out["total"] = total
    return out


def summarise(samples: list[dict[str, Any]], rounds: int, warmup: float, tolerance: float) -> dict[str, Any]:
    procs: dict[str, dict[str, Any]] = {}
    first_round: dict[str, int] = {}  # a resumed soak starts past round 0: warm-up counts from there
    for s in samples:
        for key, rss in s["rss"].items():
            node = key.split("/")[0]
            first_round.setdefault(node, s["round"][node])
            p = procs.setdefault(key, {"all": [], "after": []})
            p["all"].append(rss)
            if s["round"][node] >= first_round[node] + warmup * rounds:
                p["after"].append(rss)
    stats: dict[str, Any] = {}
    for key, p in sorted(procs.items()):
        after = [x for x in p["after"] if not math.isnan(x)]
        if len(after) < 2:
            stats[key] = {"samples_after_warmup": len(after)}
            continue
        lo, hi = min(after), max(after)
        stats[key] = {
            "samples_after_warmup": len(after),
            "first_mb": round(after[0] / MIB, 1),
            "last_mb": round(after[-1] / MIB, 1),
            "min_mb": round(lo / MIB, 1),
            "max_mb": round(hi / MIB, 1),
            "median_mb": round(statistics.median(after) / MIB, 1),
            "spread": round((hi - lo) / lo, 4),
            "drift": round((after[-1] - after[0]) / after[0], 4),
        }
    disk_max: dict[str, dict[str, int]] = {}
    for s in samples:
        for node, sizes in s["disk"].items():
            d = disk_max.setdefault(node, {})
            for kind, size in sizes.items():
                d[kind] = max(d.get(kind, 0), size)
    caps = {kind: cap_bytes(kind) for kind in CAPS}
    disk_ok = all(d.get(kind, 0) <= caps[kind] for d in disk_max.values() for kind in CAPS)
    mem_ok = bool(stats) and all(s.get("spread", math.inf) <= tolerance for s in stats.values())
    reached = min((min(s["round"].values()) for s in samples[-1:]), default=0)
    return {
        "rounds_target": rounds,
        "rounds_reached_min": reached,
        "warmup_fraction": warmup,
        "tolerance": tolerance,
        "memory": stats,
        "disk_max_bytes": disk_max,
        "disk_caps_bytes": caps,
        "memory_within_tolerance": mem_ok,
        "disk_within_caps": disk_ok,
        "pass": mem_ok and disk_ok and reached >= rounds,
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = [
        "| process | samples after warm-up | first MB | last MB | min MB | max MB | spread | drift |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, s in summary["memory"].items():
        if "spread" not in s:
            lines.append(f"| {key} | {s['samples_after_warmup']} | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {key} | {s['samples_after_warmup']} | {s['first_mb']} | {s['last_mb']} | {s['min_mb']} | "
            f"{s['max_mb']} | {s['spread'] * 100:.2f}% | {s['drift'] * 100:+.2f}% |"
        )
    lines += ["", "| node | " + " | ".join(f"max {k} MB (cap)" for k in CAPS) + " | max data dir MB |"]
    lines.append("|---|" + "---|" * (len(CAPS) + 1))
    caps = summary["disk_caps_bytes"]
    for node, d in summary["disk_max_bytes"].items():
        cells = [f"{d.get(k, 0) / MIB:.2f} ({caps[k] / MIB:.2f})" for k in CAPS]
        lines.append(f"| {node} | " + " | ".join(cells) + f" | {d.get('total', 0) / MIB:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=20_000)
    ap.add_argument("--every", type=float, default=30.0, help="Seconds between samples.")
    ap.add_argument("--warmup", type=float, default=0.1, help="Fraction of the rounds before the window.")
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--start-timeout", type=float, default=900.0, help="Seconds a node may take to come up.")
    ap.add_argument("--tiny", action="store_true", help="A smaller embedded model (faster rounds).")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="Extra --set for every node.")
    ap.add_argument("--out", type=Path, default=None, help="JSON file (rewritten after every sample).")
    args = ap.parse_args(argv)

    data = args.data_dir or Path(tempfile.mkdtemp(prefix="swarmrl-soak-"))
    sets = ["node.threads=1", *cap_sets(), *(TINY if args.tiny else ()), *args.sets]
    spec = LocalSwarmSpec(
        nodes=args.nodes,
        data_dir=data,
        rounds=args.rounds,
        sets=tuple(sets),
        start_timeout_s=args.start_timeout,
    )
    swarm = LocalSwarm(spec)
    stop = {"n": 0}

    def on_signal(signum: int, frame: object) -> None:
        stop["n"] += 1

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    samples: list[dict[str, Any]] = []
    result: dict[str, Any] = {}
    t0 = time.time()
    procs = swarm.start(stopping=lambda: stop["n"] > 0)
    print(f"soak: {args.nodes} nodes, {args.rounds} rounds each, data {data}", file=sys.stderr)
    last_round = {f"node-{p.index}": 0 for p in procs}
    try:
        while not stop["n"]:
            alive = [p for p in procs if p.process.poll() is None]
            sample: dict[str, Any] = {"t": round(time.time() - t0, 1), "round": {}, "rss": {}, "disk": {}}
            for p in procs:
                name = f"node-{p.index}"
                if p.process.poll() is None and p.info is not None:
                    try:
                        round_, rss = scrape(p.info.metrics_url)
                    except OSError:
                        round_, rss = last_round[name], {}
                    last_round[name] = round_
                    for proc_name, value in rss.items():
                        sample["rss"][f"{name}/{proc_name}"] = value
                else:
                    round_ = args.rounds if p.process.returncode == 0 else last_round[name]
                sample["round"][name] = round_
                sample["disk"][name] = dir_sizes(p.data_dir)
            samples.append(sample)
            result = {
                "wall_s": round(time.time() - t0, 1),
                "data_dir": str(data),
                "sets": sets,
                "summary": summarise(samples, args.rounds, args.warmup, args.tolerance),
                "samples": samples,
            }
            if args.out is not None:
                tmp = args.out.with_suffix(".tmp")
                tmp.write_text(json.dumps(result, indent=1))
                os.replace(tmp, args.out)
            print(
                f"t={sample['t']:.0f}s rounds={sample['round']} rss_mb="
                + json.dumps({k: round(v / MIB, 1) for k, v in sample["rss"].items()}),
                file=sys.stderr,
                flush=True,
            )
            if not alive:
                break
            deadline = time.monotonic() + args.every
            while (
                time.monotonic() < deadline and not stop["n"] and any(p.process.poll() is None for p in procs)
            ):
                time.sleep(0.5)
    finally:
        swarm.stop()
    codes = [p.process.returncode for p in procs]
    result["exit_codes"] = codes
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    print()
    print(markdown(result["summary"]))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1))
        args.out.with_suffix(".md").write_text(markdown(result["summary"]) + "\n")
    return 0 if result["summary"]["pass"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
