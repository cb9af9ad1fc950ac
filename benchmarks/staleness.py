"""Synchronous loop vs overlapped pipeline (``trainer.max_staleness=1``) on the default node.

For each seed, runs the real CLI twice (interleaved, so both see the same machine load): ``max_staleness=0``
and ``max_staleness=1``, ``--rounds R`` each, solo node. Reports per run the wall time of the rounds (first to
last journal record) and of the whole command (start-up included), the mean reward of the last 20 rounds, and
the first round (and wall time) at which the overlapped run's 20-round moving average reaches the synchronous
run's final 20-round mean.

Usage: ``python benchmarks/staleness.py [--rounds 200] [--seeds 0,1,2] [--out FILE.json]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from swarmrl.node.journal import read_rounds
from swarmrl.node.records import RoundRecord


def run(data: Path, seed: int, rounds: int, staleness: int) -> tuple[list[RoundRecord], float]:
    """The run's journal records and the wall time of the whole command (start-up and exit included)."""
    cmd = [
        sys.executable,
        "-m",
        "swarmrl.cli",
        "run",
        "--data-dir",
        str(data),
        "--rounds",
        str(rounds),
        "--seed",
        str(seed),
        "--metrics-port",
        "-1",
        "--set",
        "swarm.transport=none",
        "--set",
        "node.eval_every=0",
        "--set",
        f"trainer.max_staleness={staleness}",
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return read_rounds(data / "journal.log"), time.perf_counter() - t0


def summarise(records: list[RoundRecord], process_s: float) -> dict[str, float]:
    wall = records[-1].time - records[0].time
    return {
        "wall_s": wall,
        "process_s": process_s,
        "reward_last20": statistics.fmean(r.reward_mean for r in records[-20:]),
    }


def reach(records: list[RoundRecord], target: float, window: int = 20) -> tuple[int | None, float | None]:
    rewards = [r.reward_mean for r in records]
    for i in range(window - 1, len(rewards)):
        if statistics.fmean(rewards[i - window + 1 : i + 1]) >= target:
            return records[i].round, records[i].time - records[0].time
    return None, None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            sync, sync_s = run(Path(tmp) / f"sync-{seed}", seed, args.rounds, 0)
            over, over_s = run(Path(tmp) / f"over-{seed}", seed, args.rounds, 1)
            s, o = summarise(sync, sync_s), summarise(over, over_s)
            round_at, wall_at = reach(over, s["reward_last20"])
            rows.append(
                {
                    "seed": seed,
                    "sync": s,
                    "overlapped": o,
                    "wall_ratio": o["wall_s"] / s["wall_s"],
                    "process_ratio": o["process_s"] / s["process_s"],
                    "overlapped_reaches_sync_final_at_round": round_at,
                    "overlapped_reaches_sync_final_at_wall_ratio": None
                    if wall_at is None
                    else wall_at / s["wall_s"],
                }
            )
    result = {"rounds": args.rounds, "runs": rows}
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    print()
    print(
        "| seed | sync wall s | sync reward last 20 | overlapped wall s | overlapped reward last 20 | wall ratio "
        "| whole command s (sync / overlapped) | reaches sync's final reward at (round, wall ratio) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        at = r["overlapped_reaches_sync_final_at_round"]
        at_txt = "never" if at is None else f"{at}, {r['overlapped_reaches_sync_final_at_wall_ratio']:.2f}"
        print(
            f"| {r['seed']} | {r['sync']['wall_s']:.1f} | {r['sync']['reward_last20']:.3f} | "
            f"{r['overlapped']['wall_s']:.1f} | {r['overlapped']['reward_last20']:.3f} | {r['wall_ratio']:.2f} | "
            f"{r['sync']['process_s']:.1f} / {r['overlapped']['process_s']:.1f} | {at_txt} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
