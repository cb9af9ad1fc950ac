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
JSON, plot) is made by ``swarmrl.apps.experiment_report``.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import logging
import os
import shutil
import socket
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from swarmrl.apps.experiment_design import (  # noqa: F401 - re-exported: the harness's public names
    CONFIG_SECTIONS,
    DEFAULT_ARM,
    FAMILIES,
    SECONDS_PER_NODE_ROUND_PER_COMPLETION,
    SERIES,
    SUITE_ARMS,
    SUITE_REGIMES,
    Arm,
    Regime,
    Settings,
    Transport,
    all_arms,
    all_regimes,
    config_regime,
    default_arm,
    default_arms,
    default_regimes,
    settings_from_flags,
    smoke_settings,
    with_minutes,
)
from swarmrl.errors import ConfigError, NodeError

log = logging.getLogger(__name__)


def node_seed(seed: int, index: int) -> int:
    return seed * 1000 + index


def warmstart_mix(index: int, focus: float) -> list[dict[str, Any]]:
    """Node ``index`` is warm-started with share ``focus`` on family ``index`` and the rest spread evenly."""
    own = FAMILIES[index % len(FAMILIES)]
    rest = (1.0 - focus) / (len(FAMILIES) - 1)
    return [{"dataset": f, "weight": focus if f == own else rest} for f in FAMILIES]


def _sources(regime: Regime) -> list[dict[str, Any]]:
    extra = {"config": {"digits": regime.digits}} if regime.digits != 1 else {}
    return [{"dataset": f, **extra} for f in FAMILIES]


def tiny_section(s: Settings, regime: Regime, index: int) -> dict[str, Any]:
    """The embedded model of node ``index``: a specialist's warm-start mix, or the even mix when the
    regime is homogeneous (then every node loads the same weights, built once with node 0's seed)."""
    hidden = s.hidden_size
    focus = 1.0 / len(FAMILIES) if regime.homogeneous else s.warmstart_focus
    extra = {"config": {"digits": regime.digits}} if regime.digits != 1 else {}
    return {
        "hidden_size": hidden,
        "layers": s.layers,
        "heads": 4 if hidden % 4 == 0 else 1,
        "intermediate_size": 2 * hidden,
        "warmstart_steps": regime.warmstart_steps,
        "warmstart_sources": [{**m, **extra} for m in warmstart_mix(index, focus)],
    }


def node_config(
    s: Settings,
    regime: Regime,
    arm: Arm,
    seed: int,
    index: int,
    data_dir: Path,
    swarm: dict[str, Any],
    model_path: Path | None = None,
) -> dict[str, Any]:
    """The NodeConfig (as a dict) of node ``index`` in one arm; identical across arms but for sampling.

    With ``s.base_config`` (a user's node config) the model, tasks, rewards, generation and trainer come from
    it; the experiment sets only the node, sampling and swarm sections (and synchronous training). A
    ``model_path`` (homogeneous regimes) replaces the model name: every node loads the same weights.
    """
    node = {
        "name": f"n{index}",
        "data_dir": str(data_dir),
        "seed": node_seed(seed, index),
        "rounds": s.rounds,
        "eval_every": 0,
        "threads": 1,
        "metrics_port": -1,
        "control_port": -1,
        "checkpoint_every": max(1, s.rounds),
        "keep_checkpoints": 1,
        "record_rollouts": False,
        "progress": "plain",
        "log_level": "warning",
    }
    swarm_section = {
        **swarm,
        "publish_groups": s.budget,
        "max_publish_per_second": 10_000.0,
        "rate": {"messages_per_second": 10_000.0, "burst": 10_000},
        "pool": {"per_peer_share": 1.0},
    }
    if s.base_config is not None:
        cfg = copy.deepcopy(s.base_config)
        cfg.pop("swarm", None)
        cfg["node"] = {**cfg.get("node", {}), **node}
        cfg.setdefault("trainer", {})["max_staleness"] = 0
        cfg["sampling"] = arm.sampling(s.fill_with_local)
        cfg["swarm"] = swarm_section
        if model_path is not None:
            cfg.setdefault("model", {})["name"] = str(model_path)
        return cfg
    model: dict[str, Any] = {"tiny": tiny_section(s, regime, index)}
    if model_path is not None:
        model["name"] = str(model_path)
    return {
        "node": node,
        "model": model,
        "tasks": {"sources": _sources(regime), "eval_questions": s.eval_questions},
        "generation": {
            "num_completions": regime.completions,
            "max_new_tokens": regime.max_new_tokens or s.max_new_tokens,
        },
        # Synchronous, as in the paper: a round's external groups meet a policy that saw the previous round.
        "trainer": {"lr": s.lr, "max_staleness": 0},
        "sampling": arm.sampling(s.fill_with_local),
        "swarm": swarm_section,
    }


def shared_model(s: Settings, regime: Regime, seed: int, root: Path) -> Path:
    """Homogeneous regimes: the one embedded model every node starts from (built once per seed, cached)."""
    from swarmrl.config import NodeConfig
    from swarmrl.trainer.policy import build_embedded, embedded_fingerprint

    cfg = NodeConfig.model_validate(
        node_config(
            replace(s, base_config=None), regime, Arm("x", 1, 0), seed, 0, root, {"transport": "none"}
        )
    )
    path = root / f"shared-{embedded_fingerprint(cfg.model, cfg.tasks, node_seed(seed, 0))}"
    if not (path / "config.json").is_file():
        build_embedded(cfg.model, cfg.tasks, node_seed(seed, 0), path)
    return path


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
    from swarmrl.node.journal import read_rounds
    from swarmrl.swarm.transports.memory import MemoryHub

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
        records = read_rounds(n.data_dir / "journal.log")
        series: dict[str, Any] = {key: [round(float(getattr(r, key)), 4) for r in records] for key in SERIES}
        is_w = [r.external_is_weight for r in records if r.external_is_weight is not None]
        series["external_is_weight_mean"] = round(statistics.fmean(is_w), 4) if is_w else None
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
    """All arms of one (regime, seed): same nodes, same warm-started weights, one arm after another.

    Each finished arm is cached on its own (``runs/<regime>-seed<seed>/<arm>.json``, keyed by everything it
    depends on), so adding an arm or changing the default re-runs only what changed."""
    _quiet_logs()
    unit = s.out / "runs" / f"{regime.name}-seed{seed}"
    models = unit / "models"
    models.mkdir(parents=True, exist_ok=True)
    shared = shared_model(s, regime, seed, models) if regime.homogeneous else None
    results: dict[str, Any] = {}
    for arm in s.arms:
        cached = _finished_arm(s, regime, seed, arm)
        if cached is not None:
            results[arm.name] = cached
            continue
        t0 = time.perf_counter()
        arm_dir = unit / _slug(arm.name)
        shutil.rmtree(arm_dir, ignore_errors=True)
        dirs = [arm_dir / f"n{i}" for i in range(s.nodes)]
        for d in dirs:
            (models / d.name).mkdir(parents=True, exist_ok=True)
            d.mkdir(parents=True)
            (d / "models").symlink_to((models / d.name).resolve(), target_is_directory=True)
        swarm = _swarm_sections(s, dirs)
        cfgs = [node_config(s, regime, arm, seed, i, d, swarm[i], shared) for i, d in enumerate(dirs)]
        nodes = asyncio.run(_run_nodes(cfgs, s.transport))
        results[arm.name] = {"nodes": nodes, "seconds": time.perf_counter() - t0}
        _arm_path(s, regime, seed, arm).write_text(
            json.dumps({"key": arm_key(s, regime, arm), **results[arm.name]}), encoding="utf-8"
        )
        log.warning("%s seed %d %-22s %.0fs", regime.name, seed, arm.name, time.perf_counter() - t0)
        if not s.smoke:
            for d in dirs:  # keep the shared models, drop checkpoints and journals (summarised above)
                shutil.rmtree(d, ignore_errors=True)
    return {"regime": regime.name, "seed": seed, "arms": results}


def arm_key(s: Settings, regime: Regime, arm: Arm) -> str:
    """What one arm's results depend on (a finished arm with the same key is reused: resume, new arms)."""
    fields = asdict(
        replace(s, out=Path("."), seeds=(), workers=0, arms=(), regimes=(regime,), ma_window=0, smoke=False)
    )
    fields["arm"] = arm.sampling(s.fill_with_local)
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _arm_path(s: Settings, regime: Regime, seed: int, arm: Arm) -> Path:
    return s.out / "runs" / f"{regime.name}-seed{seed}" / f"{_slug(arm.name)}.json"


def _finished_arm(s: Settings, regime: Regime, seed: int, arm: Arm) -> dict[str, Any] | None:
    try:
        doc: dict[str, Any] = json.loads(_arm_path(s, regime, seed, arm).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if doc.pop("key", None) != arm_key(s, regime, arm):
        return None
    return doc


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
    from swarmrl.apps.experiment_report import write_report

    if not s.arms or not s.regimes or not s.seeds:
        raise ConfigError("experiment", "needs at least one arm, one regime and one seed")
    if s.arms[0].external != 0 or s.arms[0].filter_local:
        raise ConfigError(
            "experiment", "the first arm must be the unfiltered B/0 baseline (ratios refer to it)"
        )
    s.out.mkdir(parents=True, exist_ok=True)
    units = [(r, seed) for r in s.regimes for seed in s.seeds]
    t0 = time.perf_counter()
    done: dict[tuple[str, int], dict[str, Any] | None] = {(r.name, seed): None for r, seed in units}
    todo = units  # finished arms inside each unit are reused by run_unit
    if s.workers <= 1 or len(todo) <= 1:
        for r, seed in todo:
            done[(r.name, seed)] = run_unit(s, r, seed)
    else:
        ctx = get_context("spawn")  # torch and threads: never fork a process that already ran torch
        with ProcessPoolExecutor(max_workers=s.workers, mp_context=ctx) as pool:
            futures = {(r.name, seed): pool.submit(run_unit, s, r, seed) for r, seed in todo}
            for k, f in futures.items():
                done[k] = f.result()
    results = [u for u in (done[(r.name, seed)] for r, seed in units) if u is not None]
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
