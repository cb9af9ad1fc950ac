"""Bounded ingress with real processes: before/after (old all-to-all vs new) and the simulator's validation.

Two parts, one invocation (``--parts before_after,validate``), each on real gossip-only processes
(``python -m swarmrl.apps.gossip_node --control stdio``, libp2p on loopback, star bootstrap, peer exchange
completes the mesh), driven like ``benchmarks/gossip.py``:

* **before_after**: for N in ``--before-after-nodes`` (default 8,16), the same rounds with
  ``swarm.ingress_groups_per_round=0`` (old: every sender pushes to every node) and with the default budget
  (new: each node selects ``swarm.ingress_senders`` senders). Reported per node and round: received bytes,
  envelopes and accepted groups.
* **validate**: for N in ``--validate-nodes`` (default 16,32), the new mechanism with real processes and with
  ``swarm-node simulate`` set up alike (loopback-like link: 0.5 ms latency, no loss, no bandwidth limit,
  no churn; same groups, sizes, budget, rounds), side by side, with the tolerance the figures must meet
  (``TOLERANCE``).

A round: every node publishes one envelope of ``--groups`` synthetic groups (each ~``--group-bytes`` on its
own), waits until it holds what its budget implies (or ``--round-timeout``), samples ``--sample`` groups
(uniform) and drops the rest; the coordinator then waits ``--settle`` s (real rounds last minutes: the
new senders' selection frames are in place before the next round) and reads every node's counters.
* **explore** (not in the default parts): N = ``--explore-nodes`` (16) real processes capped at
  ``--explore-max-peers`` (4) connections each, a swarm larger than any node's connections, with
  ``swarm.ingress_explore`` 0 (choose among connected members only) and 2 (the default: up to two far members
  per draw, dialled), ``--explore-repeats`` times each, alternating: the sampled-sender share shows whether a
  capped node's senders range beyond its connections.

Usage: ``python benchmarks/scale.py [--parts before_after,validate,explore] [--rounds 4] [--out FILE.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from gossip import OUR_SETTINGS, Cluster  # noqa: E402

from swarmrl.apps.simulate import SimSettings, Simulation  # noqa: E402

#: Relative tolerance of the validation (simulator vs processes) per figure, and absolute for shares.
TOLERANCE = {"bytes": 0.10, "envelopes": 0.10, "groups": 0.10, "diversity_abs": 0.10, "duplicates_abs": 0.5}


class ScaleCluster(Cluster):
    """The gossip benchmark's cluster with the ingress settings of one side."""

    def __init__(
        self, n: int, budget: int, args: argparse.Namespace, work: Path, extra: tuple[str, ...] = ()
    ) -> None:
        super().__init__("ours", n, args, work / f"budget{budget}-{len(extra)}-{'-'.join(extra)}")
        self.budget = budget
        self.extra = extra

    def _argv(self, index: int, bootstrap: list[str]) -> list[str]:
        argv = super()._argv(index, bootstrap)
        argv += ["--set", f"swarm.ingress_groups_per_round={self.budget}"]
        argv += ["--set", f"swarm.ingress_senders={self.args.senders}"]
        for extra in [*self.args.set, *self.extra]:
            argv += ["--set", extra]
        return argv

    async def scale_round(self, args: argparse.Namespace) -> list[dict[str, Any]]:
        self.tag += 1
        peers = self.n - 1
        if self.budget and peers > args.senders:
            expect = min(self.budget, args.senders * args.groups)
        else:
            expect = peers * args.groups if not self.budget else min(self.budget, peers * args.groups)
        for w in self.workers:
            w.send(
                cmd="publish",
                tag=self.tag,
                batches=1,
                groups=args.groups,
                envelope_bytes=args.group_bytes,
                expect=expect,
                sample=args.sample,
                timeout_s=args.round_timeout,
            )
        have = [await w.expect("have", args.round_timeout + 30) for w in self.workers]
        await asyncio.sleep(args.settle)
        stats = await self.stats()
        for h, s in zip(have, stats, strict=True):
            s["round_ok"] = bool(h.get("ok"))
        return stats


def _deltas(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> list[dict[str, float]]:
    rows = []
    for b, a in zip(before, after, strict=True):
        rb, ra = b.get("rejected", {}), a.get("rejected", {})
        dup = sum(ra.get(k, 0) - rb.get(k, 0) for k in ("replay", "duplicate"))
        rows.append(
            {
                "bytes": a["received_bytes"] - b["received_bytes"],
                "envelopes": a["received_envelopes"] - b["received_envelopes"],
                "groups": a["accepted_groups"] - b["accepted_groups"],
                "cpu_ms": 1000 * (a["receive_cpu_s"] - b["receive_cpu_s"]),
                "duplicates": dup,
                "transport_dupes": a.get("transport", {}).get("duplicates_dropped", 0)
                - b.get("transport", {}).get("duplicates_dropped", 0),
                "over_budget": ra.get("over_budget", 0) - rb.get("over_budget", 0),
            }
        )
    return rows


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return round(statistics.fmean(r[key] for r in rows), 2) if rows else float("nan")


async def run_real(
    n: int, budget: int, args: argparse.Namespace, work: Path, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    cluster = ScaleCluster(n, budget, args, work, extra)
    t0 = time.monotonic()
    try:
        await cluster.start()
        for _ in range(args.warmup):
            last = await cluster.scale_round(args)
        for worker in cluster.workers:  # diversity over the measured rounds, as the simulator counts it
            worker.send(cmd="reset_sampled")
        for worker in cluster.workers:
            await worker.expect("reset_sampled", 30)
        if not args.warmup:
            last = await cluster.stats()
        rows: list[dict[str, float]] = []
        oks = []
        for _ in range(args.rounds):
            now = await cluster.scale_round(args)
            rows.extend(_deltas(last, now))
            oks.append(all(s["round_ok"] for s in now))
            last = now
        delays = [d for s in last for d in s.get("delays", [])]
        sampled = [s for s in last if s.get("sampled")]
        await cluster.stop()
    except BaseException:
        cluster.kill()
        raise
    delays.sort()
    share = [min(1.0, s["sampled_senders"] / min(n - 1, s["sampled"])) for s in sampled]
    return {
        "nodes": n,
        "budget": budget,
        "mode": "bounded" if budget else "all",
        "rounds_ok": oks,
        "bytes_per_round": _mean(rows, "bytes"),
        "bytes_per_round_max": max(r["bytes"] for r in rows),
        "envelopes_per_round": _mean(rows, "envelopes"),
        "groups_per_round": _mean(rows, "groups"),
        "receive_cpu_ms_per_round": _mean(rows, "cpu_ms"),
        "duplicates_per_round": _mean(rows, "duplicates"),
        "transport_duplicates_per_round": _mean(rows, "transport_dupes"),
        "over_budget_per_round": _mean(rows, "over_budget"),
        "latency_p50_s": round(delays[len(delays) // 2], 4) if delays else None,
        "latency_p99_s": round(delays[int(0.99 * (len(delays) - 1))], 4) if delays else None,
        "sampled_sender_share": round(statistics.fmean(share), 3) if share else None,
        "wall_s": round(time.monotonic() - t0, 1),
    }


async def run_sim(n: int, args: argparse.Namespace) -> dict[str, Any]:
    r = await Simulation(
        SimSettings(
            nodes=n,
            rounds=args.rounds + args.warmup,
            warmup=args.warmup,
            groups_per_node=args.groups,
            group_bytes=args.group_bytes,
            sample_groups=args.sample,
            ingress_senders=args.senders,
            latency_median_s=0.0005,
            latency_sigma=0.3,
            loss=0.0,
            uplink_bytes_per_s=0.0,
            downlink_bytes_per_s=0.0,
            churn=0.0,
            seed=n,
        )
    ).run()
    return {
        "nodes": n,
        "bytes_per_round": r["ingress_bytes_per_round"]["mean"],
        "bytes_per_round_max": r["ingress_bytes_per_round"]["max"],
        "envelopes_per_round": r["ingress_envelopes_per_round"]["mean"],
        "groups_per_round": r["accepted_groups_per_round"]["mean"],
        "receive_cpu_ms_per_round": r["receive_cpu_ms_per_round"]["mean"],
        "duplicates_per_round": r["duplicates_per_round"]["mean"],
        "latency_p50_s": r["latency_s"]["p50"],
        "latency_p99_s": r["latency_s"]["p99"],
        "sampled_sender_share": r["diversity"]["sampled_sender_share"],
        "bound_bytes_per_round": r["bound"]["bytes_per_round"],
        "wall_s": r["wall_s"],
    }


def verdict(sim: dict[str, Any], real: dict[str, Any]) -> dict[str, bool]:
    def rel(key: str, tol: float) -> bool:
        a, b = float(sim[key]), float(real[key])
        return abs(a - b) <= tol * max(abs(b), 1e-9)

    return {
        "bytes": rel("bytes_per_round", TOLERANCE["bytes"]),
        "envelopes": rel("envelopes_per_round", TOLERANCE["envelopes"]),
        "groups": rel("groups_per_round", TOLERANCE["groups"]),
        "diversity": abs((sim["sampled_sender_share"] or 0) - (real["sampled_sender_share"] or 0))
        <= TOLERANCE["diversity_abs"],
        "duplicates": abs(sim["duplicates_per_round"] - real["duplicates_per_round"])
        <= TOLERANCE["duplicates_abs"],
    }


def markdown(result: dict[str, Any]) -> str:
    out = []
    if result.get("before_after"):
        out.append(
            "| N | mode | KB/round per node (max) | envelopes/round | groups/round | recv CPU ms/round |"
        )
        out.append("|---|---|---|---|---|---|")
        for r in result["before_after"]:
            out.append(
                f"| {r['nodes']} | {r['mode']} | {r['bytes_per_round'] / 1000:.0f} "
                f"({r['bytes_per_round_max'] / 1000:.0f}) | {r['envelopes_per_round']} | {r['groups_per_round']} "
                f"| {r['receive_cpu_ms_per_round']} |"
            )
    if result.get("validate"):
        out.append("")
        out.append(
            "| N | side | KB/round per node | envelopes/round | groups/round | sampled-sender share | "
            "duplicates/round | recv CPU ms/round | latency p50/p99 s | within tolerance |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for v in result["validate"]:
            for side in ("sim", "real"):
                r = v[side]
                ok = ", ".join(k for k, good in v["within"].items() if good) if side == "sim" else ""
                out.append(
                    f"| {v['nodes']} | {side} | {r['bytes_per_round'] / 1000:.1f} | {r['envelopes_per_round']} | "
                    f"{r['groups_per_round']} | {r['sampled_sender_share']} | {r['duplicates_per_round']} | "
                    f"{r['receive_cpu_ms_per_round']} | {r['latency_p50_s']}/{r['latency_p99_s']} | {ok} |"
                )
    if result.get("explore"):
        out.append("")
        out.append(
            "| N | max_peers | ingress_explore | repeat | sampled-sender share | groups/round | KB/round per node |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for r in result["explore"]:
            out.append(
                f"| {r['nodes']} | {r['max_peers']} | {r['explore']} | {r['repeat']} | {r['sampled_sender_share']} "
                f"| {r['groups_per_round']} | {r['bytes_per_round'] / 1000:.0f} |"
            )
    return "\n".join(out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="before_after,validate")
    p.add_argument("--before-after-nodes", default="8,16")
    p.add_argument("--validate-nodes", default="16,32")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--groups", type=int, default=4)
    p.add_argument("--group-bytes", type=int, default=10_000)
    p.add_argument("--sample", type=int, default=4)
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--budget", type=int, default=32)
    p.add_argument("--round-timeout", type=float, default=10.0)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--sample-s", type=float, default=1.0, help="memory sampling interval (gossip.Cluster)")
    p.add_argument("--explore-nodes", type=int, default=16)
    p.add_argument("--explore-max-peers", type=int, default=4)
    p.add_argument("--explore-repeats", type=int, default=2)
    p.add_argument("--set", action="append", default=[], help="KEY=VALUE for every node (repeatable)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.hivemind_python = sys.executable  # unused (our side only); gossip.Cluster reads it
    return args


async def run(args: argparse.Namespace) -> dict[str, Any]:
    parts = set(args.parts.split(","))
    result: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "load_before": os.getloadavg()}}
    result["settings"] = {k: v for k, v in vars(args).items() if k not in ("out",)} | {"our": OUR_SETTINGS}
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        work = Path(tmp)
        if "before_after" in parts:
            result["before_after"] = []
            for n in [int(x) for x in args.before_after_nodes.split(",")]:
                for budget in (0, args.budget):
                    r = await run_real(n, budget, args, work)
                    print(json.dumps(r), file=sys.stderr, flush=True)
                    result["before_after"].append(r)
        if "validate" in parts:
            result["validate"] = []
            for n in [int(x) for x in args.validate_nodes.split(",")]:
                real = await run_real(n, args.budget, args, work)
                sim = await run_sim(n, args)
                v = {"nodes": n, "sim": sim, "real": real, "within": verdict(sim, real)}
                print(json.dumps(v), file=sys.stderr, flush=True)
                result["validate"].append(v)
        if "explore" in parts:
            result["explore"] = []
            n, cap = args.explore_nodes, args.explore_max_peers
            for rep in range(args.explore_repeats):
                for explore in (0, 2):
                    extra = (f"swarm.max_peers={cap}", f"swarm.ingress_explore={explore}")
                    r = await run_real(n, args.budget, args, work / f"rep{rep}", extra)
                    r |= {"explore": explore, "max_peers": cap, "repeat": rep}
                    print(json.dumps(r), file=sys.stderr, flush=True)
                    result["explore"].append(r)
    result["machine"]["load_after"] = os.getloadavg()
    result["tolerance"] = TOLERANCE
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(markdown(result))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
