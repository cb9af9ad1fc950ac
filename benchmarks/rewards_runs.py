"""Run the reward-pipeline configs in ``deploy/configs/rewards/`` as real nodes and tabulate the outcome.

Each config runs as a ``swarm-node run`` subprocess (CLI, fresh data directory, one torch thread by default)
for ``--rounds`` rounds, one after the other. While it runs, ``/metrics`` is scraped once a few rounds in to
check that every pipeline module is exported as ``swarmrl_reward_mean{module="..."}``. Afterwards the
journal gives, over the last ``--last`` rounds: the mean training reward (``reward_mean``: outcome plus dense
return, in each pipeline's own units, so not comparable across pipelines), the exact-match accuracy of the
sampled completions, and each module's mean.

Usage: ``python benchmarks/rewards_runs.py [--rounds 100] [--last 20] [--threads 1] [--out DIR]
[--json FILE] [CONFIG ...]``. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "deploy" / "configs" / "rewards"
METRICS_RE = re.compile(r"metrics at (http://[\d.]+:\d+/metrics)")
ROUND_RE = re.compile(r"round (\d+)/")
MODULE_RE = re.compile(r'^swarmrl_reward_mean\{module="([^"]+)"\}', re.M)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def run_config(config: Path, data_dir: Path, rounds: int, threads: int, timeout: float) -> dict[str, Any]:
    """One node run; returns wall time, exit code, the module labels seen on /metrics and the log path."""
    log_path = data_dir.with_suffix(".log")
    cmd = [
        sys.executable,
        "-m",
        "swarmrl.cli",
        "run",
        "--config",
        str(config),
        "--data-dir",
        str(data_dir),
        "--rounds",
        str(rounds),
        "--metrics-port",
        "0",
        "--set",
        f"node.threads={threads}",
        "--set",
        "node.progress=plain",
        "--set",  # the recorded figures (README) are synchronous runs
        "trainer.max_staleness=0",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARMRL_")}
    env["PYTHONUNBUFFERED"] = "1"
    t0 = time.monotonic()
    labels: list[str] = []
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            while proc.poll() is None and time.monotonic() - t0 < timeout:
                text = log_path.read_text(errors="replace")
                url = METRICS_RE.search(text)
                done = [int(r) for r in ROUND_RE.findall(text)]
                if not labels and url and done and max(done) >= 1:
                    with contextlib.suppress(OSError):
                        labels = sorted(set(MODULE_RE.findall(_scrape(url.group(1)))))
                time.sleep(0.2)
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    return {
        "config": config.stem,
        "rc": proc.returncode,
        "seconds": time.monotonic() - t0,
        "metric_modules": labels,
        "log": str(log_path),
    }


def summarize(data_dir: Path, last: int) -> dict[str, Any]:
    """Means over the last ``last`` journal rounds."""
    from swarmrl.node.journal import read_journal

    records = [r for r in read_journal(data_dir / "journal.log") if r.get("kind", "round") == "round"]
    tail = records[-last:]
    if not tail:
        return {"rounds": 0}
    modules: dict[str, float] = {}
    for name in tail[-1].get("modules", {}):
        modules[name] = statistics.fmean(float(r["modules"].get(name, 0.0)) for r in tail)
    evals = [r["eval_accuracy"] for r in records if r.get("eval_accuracy") is not None]
    return {
        "rounds": len(records),
        "reward_mean": statistics.fmean(float(r["reward_mean"]) for r in tail),
        "accuracy": statistics.fmean(float(r["accuracy"]) for r in tail),
        "first_accuracy": statistics.fmean(float(r["accuracy"]) for r in records[:last]),
        "eval_accuracy": evals[-1] if evals else None,
        "modules": modules,
    }


def table(rows: list[dict[str, Any]], last: int) -> str:
    head = (
        f"| config | rounds | rc | mean reward (last {last}) | accuracy (last {last}) | accuracy (first {last}) "
        f"| final greedy eval | module means (last {last}) | /metrics modules | seconds |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        s = r.get("summary", {})
        mods = ", ".join(f"{k} {v:.3f}" for k, v in s.get("modules", {}).items())
        ev = s.get("eval_accuracy")
        lines.append(
            f"| {r['config']} | {s.get('rounds', 0)} | {r['rc']} | {s.get('reward_mean', float('nan')):.3f} "
            f"| {s.get('accuracy', float('nan')):.3f} | {s.get('first_accuracy', float('nan')):.3f} "
            f"| {'-' if ev is None else f'{ev:.3f}'} | {mods} | {', '.join(r['metric_modules'])} "
            f"| {r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("configs", nargs="*", type=Path, help="configs (default: deploy/configs/rewards/*.yaml)")
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--last", type=int, default=20, help="rounds averaged at the end")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per node")
    ap.add_argument("--out", type=Path, default=None, help="directory for data dirs and logs (default: temp)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per run before it is stopped")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.last < 1:
        ap.error("--rounds and --last must be >= 1")
    configs = args.configs or sorted(CONFIGS.glob("*.yaml"))
    out = args.out or Path(tempfile.mkdtemp(prefix="swarmrl-rewards-"))
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for config in configs:
        data_dir = out / config.stem
        print(
            f"running {config.name} for {args.rounds} rounds in {data_dir} ...", file=sys.stderr, flush=True
        )
        row = run_config(config, data_dir, args.rounds, args.threads, args.timeout)
        row["summary"] = summarize(data_dir, args.last)
        rows.append(row)
    print(table(rows, args.last))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
