"""The SAPO experiment: does sharing rollouts help, for which split of the per-round budget, and when?

N real nodes (``swarmrl.node.node.Node``, the full round loop) run in one process on one asyncio loop, joined
by the in-memory transport (or by libp2p on loopback with ``transport="libp2p"``). Each node has its own tiny
policy, its own seed and its own strength: node ``i`` is warm-started mostly on task family ``i`` (add, sub,
mul, mixed) and then trains on all of them. For every *arm* (a split I/J of the per-round budget of B trained
groups, a sampling strategy, the "8/0 filtered" control, the ``adaptive`` sampler) and every seed the same
nodes start from the same warm-started weights and run the same number of rounds, so arms are compared
pairwise per seed.

Fairness: the budget is the number of groups a node trains on per round. With ``fill_with_local`` (default)
a node whose pool holds fewer useful external groups than J generates the shortfall itself, so every arm
trains on B groups per round and the realised J is reported next to the nominal one. Every node shares all
the groups it generates. The one exception is the control "B/0 filtered": own zero-advantage groups are
dropped and not replaced (that is the filter whose effect it isolates).

One *unit* of work is (regime, seed): all arms of that seed run one after another in one worker process and
share the warm-started models (cached per node). Units run in ``workers`` processes. The report (tables,
JSON, plot) is made by ``swarmrl.node.experiment_report``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import os
import shutil
import socket
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

from swarmrl.errors import ConfigError, NodeError

log = logging.getLogger(__name__)

FAMILIES = ("add", "sub", "mul", "mixed")
#: Per-round journal fields kept per node (columnar lists in the results JSON; round_seconds as a median).
SERIES = (
    "reward_mean",
    "trained_reward_mean",
    "zero_variance_fraction",
    "local_groups",
    "external_groups",
    "round_seconds",
)
Transport = Literal["memory", "libp2p"]


@dataclass(frozen=True)
class Arm:
    """One way of spending the per-round budget: I own groups, J external groups, a sampler."""

    name: str
    local: int
    external: int
    strategy: str = "nonzero_advantage_uniform"
    filter_local: bool = False


@dataclass(frozen=True)
class Regime:
    """Signal density: completions per question and warm-start strength (supervised steps)."""

    name: str
    completions: int
    warmstart_steps: int


@dataclass(frozen=True)
class Settings:
    """Everything that determines a run of the experiment (written into the JSON)."""

    out: Path
    rounds: int = 120
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    nodes: int = 4
    budget: int = 8
    arms: tuple[Arm, ...] = ()
    regimes: tuple[Regime, ...] = ()
    transport: Transport = "memory"
    workers: int = 2
    fill_with_local: bool = True
    hidden_size: int = 64
    layers: int = 1
    max_new_tokens: int = 4
    eval_questions: int = 32
    warmstart_focus: float = 0.7
    lr: float = 3e-4
    ma_window: int = 10
    smoke: bool = False


def default_arms(budget: int = 8) -> tuple[Arm, ...]:
    """The paper's splits (B/0 .. 2/B-2 in steps of 2), the filtered control, the other samplers at the
    even split, and the adaptive sampler (J chosen each round between 0 and B/2)."""
    if budget < 2 or budget % 2:
        raise ConfigError("--budget", f"the per-round budget must be an even number >= 2, got {budget}")
    half = budget // 2
    arms = [Arm(f"{budget}/0", budget, 0), Arm(f"{budget}/0 filtered", budget, 0, filter_local=True)]
    arms += [Arm(f"{budget - j}/{j}", budget - j, j) for j in range(2, budget, 2)]
    arms += [
        Arm(f"{half}/{half} uniform", half, half, "uniform"),
        Arm(f"{half}/{half} top_reward", half, half, "top_reward"),
        Arm("adaptive", half, half, "adaptive"),
    ]
    return tuple(arms)


def default_regimes() -> tuple[Regime, ...]:
    return (
        Regime("sparse", completions=4, warmstart_steps=40),
        Regime("dense", completions=8, warmstart_steps=160),
    )


def smoke_settings(out: Path, transport: Transport = "memory") -> Settings:
    """A pipeline check for CI: 2 nodes, 3 arms, 2 seeds, a few rounds, both regimes (well under 2 min)."""
    arms = (Arm("4/0", 4, 0), Arm("2/2", 2, 2), Arm("adaptive", 2, 2, "adaptive"))
    regimes = (Regime("sparse", 2, 5), Regime("dense", 4, 10))
    return Settings(
        out=out,
        rounds=4,
        seeds=(0, 1),
        nodes=2,
        budget=4,
        arms=arms,
        regimes=regimes,
        transport=transport,
        workers=1,
        hidden_size=16,
        layers=1,
        max_new_tokens=3,
        eval_questions=4,
        ma_window=2,
        smoke=True,
    )


# -- configs ----------------------------------------------------------------------------------------------
def node_seed(seed: int, index: int) -> int:
    return seed * 1000 + index


def warmstart_mix(index: int, focus: float) -> list[dict[str, Any]]:
    """Node ``index`` is warm-started with share ``focus`` on family ``index`` and the rest spread evenly."""
    own = FAMILIES[index % len(FAMILIES)]
    rest = (1.0 - focus) / (len(FAMILIES) - 1)
    return [{"dataset": f, "weight": focus if f == own else rest} for f in FAMILIES]


def node_config(
    s: Settings, regime: Regime, arm: Arm, seed: int, index: int, data_dir: Path, swarm: dict[str, Any]
) -> dict[str, Any]:
    """The NodeConfig (as a dict) of node ``index`` in one arm; identical across arms but for sampling."""
    hidden = s.hidden_size
    return {
        "node": {
            "name": f"n{index}",
            "data_dir": str(data_dir),
            "seed": node_seed(seed, index),
            "rounds": s.rounds,
            "eval_every": 0,
            "threads": 1,
            "metrics_port": -1,
            "checkpoint_every": max(1, s.rounds),
            "keep_checkpoints": 1,
            "record_rollouts": False,
            "progress": "plain",
            "log_level": "warning",
        },
        "model": {
            "tiny": {
                "hidden_size": hidden,
                "layers": s.layers,
                "heads": 4 if hidden % 4 == 0 else 1,
                "intermediate_size": 2 * hidden,
                "warmstart_steps": regime.warmstart_steps,
                "warmstart_sources": warmstart_mix(index, s.warmstart_focus),
            }
        },
        "tasks": {"sources": [{"dataset": f} for f in FAMILIES], "eval_questions": s.eval_questions},
        "generation": {"num_completions": regime.completions, "max_new_tokens": s.max_new_tokens},
        # Synchronous, as in the paper: a round's external groups meet a policy that saw the previous round.
        "trainer": {"lr": s.lr, "max_staleness": 0},
        "sampling": {
            "local_groups": arm.local,
            "external_groups": arm.external,
            "strategy": arm.strategy,
            "filter_local": arm.filter_local,
            "fill_with_local": s.fill_with_local,
        },
        "swarm": {
            **swarm,
            "publish_groups": s.budget,
            "max_publish_per_second": 10_000.0,
            "rate": {"messages_per_second": 10_000.0, "burst": 10_000},
            "pool": {"per_peer_share": 1.0},
        },
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _swarm_sections(s: Settings, dirs: list[Path]) -> list[dict[str, Any]]:
    """Per-node swarm sections: the memory hub, or libp2p on loopback with every node dialling node 0."""
    if s.transport == "memory":
        return [{"transport": "memory"} for _ in dirs]
    from swarmrl.swarm.identity import Identity

    ports = [_free_port() for _ in dirs]
    boot_id = Identity.load_or_create(dirs[0] / "identity.key").peer_id_text
    boot = f"/ip4/127.0.0.1/tcp/{ports[0]}/p2p/{boot_id}"
    return [
        {
            "transport": "libp2p",
            "listen_port": port,
            "peer_cache_file": "",
            "bootstrap_peers": [] if i == 0 else [boot],
        }
        for i, port in enumerate(ports)
    ]


# -- running ----------------------------------------------------------------------------------------------
def _node_class() -> Any:
    from swarmrl.node.node import Node

    class ExperimentNode(Node):
        """A Node started ahead of its round loop, one at a time: transformers' model loading patches
        module-level state (meta-device init), so two loads in concurrent threads of one process break,
        and over libp2p the swarm must be connected before round 1 for the arms to be comparable."""

        _started = False

        async def start(self) -> None:
            if not self._started:
                self._started = True
                await super().start()

        def _install_signals(self) -> None:
            """Experiment nodes leave signals alone: Ctrl-C or a kill ends the whole experiment."""

    return ExperimentNode


async def _wait_connected(nodes: list[Any], timeout_s: float) -> None:
    """Wait until every node sees all the others (libp2p), then two heartbeats for the gossip mesh."""
    want = len(nodes) - 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while any(len(n.swarm.peers()) < want for n in nodes):
        if loop.time() > deadline:
            seen = [len(n.swarm.peers()) for n in nodes]
            raise NodeError(f"libp2p nodes did not all connect within {timeout_s:.0f}s (peers seen: {seen})")
        await asyncio.sleep(0.1)
    await asyncio.sleep(2 * max(n.cfg.swarm.heartbeat_s for n in nodes))


def greedy_eval(node: Any) -> dict[str, Any]:
    """Greedy exact-match accuracy on the node's held-out questions (as ``Node.evaluate``), plus how
    degenerate greedy decoding is: the share of questions that get the most common answer. A policy whose
    sampled reward looks fine can still answer (almost) everything with one string when decoded greedily."""
    from collections import Counter

    from swarmrl.protocol.types import RolloutGroup
    from swarmrl.trainer.generation import SamplingParams
    from swarmrl.trainer.prompts import prompt_ids

    evals = node.tasks.eval_set()
    if not evals:
        return {"accuracy": float("nan"), "top_share": float("nan"), "top_answer": ""}
    g = node.cfg.generation
    outs = node.generator.generate(
        [prompt_ids(node.policy.tokenizer, t.question) for t in evals],
        SamplingParams(1, g.temperature, g.top_p, g.max_new_tokens, greedy=True),
    )
    groups = [RolloutGroup(t.ref, t.question, t.answer, c[:1]) for t, c in zip(evals, outs, strict=True)]
    _, scored = node.score(groups, list(evals))
    answer, count = Counter(c[0].text.strip() for c in outs).most_common(1)[0]
    return {
        "accuracy": round(statistics.fmean(s.accuracy[0] for s in scored), 4),
        "top_share": round(count / len(outs), 4),
        "top_answer": answer,
    }


async def _run_nodes(configs: list[dict[str, Any]], transport: Transport) -> list[dict[str, Any]]:
    """Run the nodes of one arm to the end; return per node its journal and final greedy accuracy."""
    from swarmrl.config import NodeConfig
    from swarmrl.node.journal import read_journal
    from swarmrl.swarm.memory import MemoryHub

    hub = MemoryHub() if transport == "memory" else None
    node_cls = _node_class()
    nodes = [node_cls(NodeConfig.model_validate(c), hub=hub) for c in configs]
    started: list[Any] = []
    try:
        for n in nodes:
            await n.start()
            started.append(n)
        if transport == "libp2p":
            await _wait_connected(nodes, timeout_s=60.0)
    except BaseException:
        for n in started:
            await n.close()
        raise
    before = [await asyncio.to_thread(greedy_eval, n) for n in nodes]
    await asyncio.gather(*(n.run() for n in nodes))
    out = []
    for n, start in zip(nodes, before, strict=True):
        final = await asyncio.to_thread(greedy_eval, n)
        records = [r for r in read_journal(n.data_dir / "journal.log") if r.get("kind") == "round"]
        series: dict[str, Any] = {
            key: [round(float(r[key]), 4) for r in records] for key in SERIES if key != "round_seconds"
        }
        series["round_seconds"] = statistics.median([r["round_seconds"] for r in records]) if records else 0.0
        out.append(
            {
                "name": n.cfg.node.name,
                "eval_accuracy": final["accuracy"],
                "greedy_top_share": final["top_share"],
                "greedy_top_answer": final["top_answer"],
                "eval_accuracy_start": start["accuracy"],
                "greedy_top_share_start": start["top_share"],
                **series,
            }
        )
    return out


def run_unit(s: Settings, regime: Regime, seed: int) -> dict[str, Any]:
    """All arms of one (regime, seed): same nodes, same warm-started weights, one arm after another."""
    _quiet_logs()
    unit = s.out / "runs" / f"{regime.name}-seed{seed}"
    models = unit / "models"
    results: dict[str, Any] = {}
    for arm in s.arms:
        t0 = time.perf_counter()
        arm_dir = unit / _slug(arm.name)
        shutil.rmtree(arm_dir, ignore_errors=True)
        dirs = [arm_dir / f"n{i}" for i in range(s.nodes)]
        for d in dirs:
            (models / d.name).mkdir(parents=True, exist_ok=True)
            d.mkdir(parents=True)
            (d / "models").symlink_to((models / d.name).resolve(), target_is_directory=True)
        swarm = _swarm_sections(s, dirs)
        cfgs = [node_config(s, regime, arm, seed, i, d, swarm[i]) for i, d in enumerate(dirs)]
        nodes = asyncio.run(_run_nodes(cfgs, s.transport))
        results[arm.name] = {"nodes": nodes, "seconds": time.perf_counter() - t0}
        log.warning("%s seed %d %-22s %.0fs", regime.name, seed, arm.name, time.perf_counter() - t0)
        if not s.smoke:
            for d in dirs:  # keep the shared models, drop checkpoints and journals (summarised above)
                shutil.rmtree(d, ignore_errors=True)
    doc = {"regime": regime.name, "seed": seed, "key": unit_key(s, regime), "arms": results}
    _unit_path(s, regime, seed).write_text(json.dumps(doc), encoding="utf-8")
    return doc


def unit_key(s: Settings, regime: Regime) -> str:
    """What a unit's results depend on: a finished unit with the same key is reused (resume)."""
    fields = asdict(
        replace(s, out=Path("."), seeds=(), workers=0, regimes=(regime,), ma_window=0, smoke=False)
    )
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _unit_path(s: Settings, regime: Regime, seed: int) -> Path:
    return s.out / "runs" / f"{regime.name}-seed{seed}.json"


def _finished_unit(s: Settings, regime: Regime, seed: int) -> dict[str, Any] | None:
    path = _unit_path(s, regime, seed)
    try:
        doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if doc.get("key") == unit_key(s, regime) else None


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


def _quiet_logs() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    for name in ("swarmrl", "transformers", "libp2p", "multiaddr", "trio"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger(__name__).setLevel(logging.WARNING)


def run_experiment(s: Settings) -> dict[str, Any]:
    """Run every (regime, seed) unit, then write ``sapo-results.json``, ``sapo-table.md`` and
    ``sapo-reward.png`` into ``s.out``; returns the results document."""
    from swarmrl.node.experiment_report import write_report

    if not s.arms or not s.regimes or not s.seeds:
        raise ConfigError("experiment", "needs at least one arm, one regime and one seed")
    if s.arms[0].external != 0 or s.arms[0].filter_local:
        raise ConfigError(
            "experiment", "the first arm must be the unfiltered B/0 baseline (ratios refer to it)"
        )
    s.out.mkdir(parents=True, exist_ok=True)
    units = [(r, seed) for r in s.regimes for seed in s.seeds]
    t0 = time.perf_counter()
    done = {(r.name, seed): _finished_unit(s, r, seed) for r, seed in units}
    todo = [(r, seed) for r, seed in units if done[(r.name, seed)] is None]
    if len(todo) < len(units):
        log.warning("reusing %d finished unit(s) from %s", len(units) - len(todo), s.out / "runs")
    if s.workers <= 1 or len(todo) <= 1:
        for r, seed in todo:
            done[(r.name, seed)] = run_unit(s, r, seed)
    else:
        ctx = get_context("spawn")  # torch and threads: never fork a process that already ran torch
        with ProcessPoolExecutor(max_workers=s.workers, mp_context=ctx) as pool:
            futures = {(r.name, seed): pool.submit(run_unit, s, r, seed) for r, seed in todo}
            for k, f in futures.items():
                done[k] = f.result()
    results = [done[(r.name, seed)] for r, seed in units]
    doc = {
        "settings": _settings_doc(s),
        "wall_seconds": time.perf_counter() - t0,
        "units": results,
    }
    return write_report(doc, s)


def _settings_doc(s: Settings) -> dict[str, Any]:
    d = asdict(s)
    d["out"] = str(s.out)
    d["cpu_count"] = os.cpu_count()
    return d


def with_minutes(s: Settings, minutes: float, seconds_per_node_round: float) -> Settings:
    """Choose the rounds so that the whole run fits ``minutes`` on ``s.workers`` processes."""
    per_round = len(s.regimes) * len(s.seeds) * len(s.arms) * s.nodes * seconds_per_node_round
    rounds = int(minutes * 60 * max(1, s.workers) / per_round)
    if rounds < 10:
        raise NodeError(
            f"{minutes} minutes allow only {rounds} rounds; give more minutes or fewer seeds/arms"
        )
    return replace(s, rounds=rounds, ma_window=max(2, min(s.ma_window, math.ceil(rounds / 10))))


#: Measured wall seconds per node-round on the 2-core reference machine with 2 workers busy, per completion
#: of the group size (a round costs roughly in proportion to G at these sizes); used by ``--minutes``.
SECONDS_PER_NODE_ROUND_PER_COMPLETION = 0.032


def settings_from_flags(
    out: Path,
    minutes: float,
    rounds: int | None,
    seeds: int,
    nodes: int,
    workers: int,
    regimes: list[str] | None,
    transport: str,
    fill: bool,
    smoke: bool,
    arms: list[str] | None = None,
) -> Settings:
    """Settings from the CLI flags; ``rounds`` wins over ``minutes``; ``arms`` picks a subset of the
    default arms by name (the B/0 baseline is always kept, first)."""
    if transport not in ("memory", "libp2p"):
        raise ConfigError("--transport", f"must be 'memory' or 'libp2p', got {transport!r}")
    tr: Transport = "libp2p" if transport == "libp2p" else "memory"
    if smoke:
        return replace(smoke_settings(out, tr), fill_with_local=fill)
    known = {r.name: r for r in default_regimes()}
    names = regimes or list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError("--regime", f"unknown regime(s) {unknown}; choose from {sorted(known)}")
    if seeds < 1 or nodes < 2 or workers < 1:
        raise ConfigError("experiment", "needs --seeds >= 1, --nodes >= 2 and --workers >= 1")
    chosen = default_arms()
    if arms:
        known_arms = {a.name for a in chosen}
        wrong = [a for a in arms if a not in known_arms]
        if wrong:
            raise ConfigError("--arm", f"unknown arm(s) {wrong}; choose from {[a.name for a in chosen]}")
        chosen = tuple(a for i, a in enumerate(chosen) if i == 0 or a.name in arms)
    s = Settings(
        out=out,
        seeds=tuple(range(seeds)),
        nodes=nodes,
        arms=chosen,
        regimes=tuple(known[n] for n in names),
        transport=tr,
        workers=workers,
        fill_with_local=fill,
    )
    if rounds is not None:
        if rounds < 2:
            raise ConfigError("--rounds", "needs at least 2 rounds")
        return replace(s, rounds=rounds, ma_window=max(2, min(s.ma_window, math.ceil(rounds / 10))))
    mean_g = statistics.fmean(r.completions for r in s.regimes)
    return with_minutes(s, minutes, SECONDS_PER_NODE_ROUND_PER_COMPLETION * mean_g)
