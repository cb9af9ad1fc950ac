"""The swarm-node daemon: the round loop (tasks -> generate -> score -> share -> train), lifecycle,
journal, checkpoints, metrics.

Model work runs in a worker thread (torch releases the GIL) so the asyncio loop stays free for the swarm,
the control service and signals. A stop request (SIGINT/SIGTERM) lets the round in flight finish, writes a
checkpoint and exits cleanly; a second one exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import random
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from swarmrl.config import NodeConfig
from swarmrl.errors import NodeError, SwarmRLError
from swarmrl.node.evaluation import EvalResult, EvalSettings, evaluate_tasks
from swarmrl.node.inputs import NodeInputs
from swarmrl.node.journal import Journal
from swarmrl.node.metrics import MetricsServer, NodeMetrics
from swarmrl.node.progress import Progress
from swarmrl.node.rollouts import (
    PROMPT_IDS,
    ExternalPolicy,
    retokenize,
    sequence_logprob,
    to_samples,
    train_sequences,
)
from swarmrl.node.saved_config import write_node_config
from swarmrl.node.tracking import Tracking
from swarmrl.node.validate import build_reward_pipeline, build_scheduler, schedule_horizon
from swarmrl.protocol.types import PolicyInfo, RolloutGroup
from swarmrl.rewards import Sample
from swarmrl.rewards.pipeline import ScoredGroup
from swarmrl.swarm.sampler import HAS_SIGNAL
from swarmrl.tasks import Task, TaskSampler, build_source
from swarmrl.trainer.checkpoint import load_latest, restore_rng, rng_state, save_checkpoint
from swarmrl.trainer.generation import Generator, SamplingParams, build_generator
from swarmrl.trainer.genlaunch import GenerationWorker, launch, wants_process
from swarmrl.trainer.genprocess import ProcessGenerator
from swarmrl.trainer.learner import Learner, StepStats
from swarmrl.trainer.policy import load_policy
from swarmrl.trainer.prompts import prompts_ids
from swarmrl.trainer.scorer import attach_scorer

log = logging.getLogger(__name__)


def _mean(values: list[float]) -> float:
    return float(statistics.fmean(values)) if values else 0.0


def truncated_fraction(groups: list[RolloutGroup]) -> float:
    """Share of the completions that hit ``generation.max_new_tokens`` without an end-of-sequence token."""
    return _mean([0.0 if c.finished else 1.0 for g in groups for c in g.completions])


@dataclass
class RoundResult:
    """What one round produced; becomes a journal record and metric updates."""

    round: int
    record: dict[str, Any] = field(default_factory=dict)
    local: list[RolloutGroup] = field(default_factory=list)


class Node:
    """One node. ``hub`` connects in-process nodes when ``swarm.transport`` is ``memory`` (simulations)."""

    def __init__(self, cfg: NodeConfig, hub: Any = None, gen_worker: GenerationWorker | None = None) -> None:
        self.cfg = cfg
        self.hub = hub
        self._gen_worker = gen_worker
        self.data_dir = Path(cfg.node.data_dir).expanduser()
        self.metrics = NodeMetrics()
        self.round = 0
        self._stop = asyncio.Event()
        self._stops = 0
        self._healthy = False
        self.server: MetricsServer | None = None
        self.tracking: Tracking | None = None
        self.last_checkpoint: Path | None = None
        self.swarm: Any = None
        self.control: Any = None
        self._ext_cache: dict[int, tuple[RolloutGroup, list[Sample], ScoredGroup]] = {}
        self._weights_lock = threading.Lock()
        self._ckpt_task: asyncio.Task[None] | None = None
        self._prefetch: dict[int, asyncio.Task[tuple[list[RolloutGroup], list[Task], float, int]]] = {}
        self._last_external = 0  # external groups trained on last round (predicts the next shortfall)
        s = cfg.sampling
        self.external_policy = ExternalPolicy.from_config(
            s.external_samples, s.offpolicy_correction, s.offpolicy_cap
        )
        self.last_eval: EvalResult | None = None

    # -- set-up ----------------------------------------------------------------------------------------
    def _setup(self) -> None:
        cfg = self.cfg
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NodeError(f"cannot create data directory '{self.data_dir}': {exc}") from exc
        write_node_config(cfg, self.data_dir)  # export and eval rebuild the policy from it
        try:
            import transformers

            transformers.utils.logging.set_verbosity_error()
            transformers.utils.logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - a core dependency
            pass
        threads = cfg.node.threads or os.cpu_count() or 1
        torch.set_num_threads(threads)
        # With overlapped generation, generation and training run at the same time (in a child process or
        # a second thread): each gets half of the cores (OpenMP thread counts are per calling thread)
        # instead of both spinning on all of them.
        overlap = cfg.trainer.max_staleness > 0
        gen_threads = max(1, threads // 2)
        self._work_threads = max(1, threads - gen_threads) if overlap else threads
        seed = cfg.node.seed
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        self.policy = load_policy(cfg.model, cfg.tasks, self.data_dir, seed)
        log.info(
            "policy %s: %.2fM parameters on %s (%.1fs)",
            self.policy.name,
            self.policy.num_parameters() / 1e6,
            self.policy.device,
            time.perf_counter() - t0,
        )
        self.learner = Learner(self.policy, cfg.trainer, schedule_steps=schedule_horizon(cfg))
        self.gen_policy = self.policy
        self.generator: Generator
        worker, self._gen_worker = self._gen_worker, None
        if not wants_process(cfg, self.policy.device.type):
            if worker is not None:  # the CLI guessed the device wrong
                worker.stop(timeout=0)
            worker = None
        elif worker is None:
            worker = launch()
        if worker is not None:
            # Generation of the next round overlaps training in a child process (weights in shared memory).
            self.generator = ProcessGenerator(
                self.policy, gen_threads, lambda: self.learner.version, cfg.model.trust_remote_code, worker
            )
        else:
            if overlap and cfg.generation.backend == "hf":
                # Generation of the next round overlaps training in a thread: it needs its own weights.
                self.gen_policy = replace(self.policy, model=copy.deepcopy(self.policy.model).eval())
            self.generator = build_generator(cfg.generation.backend, self.gen_policy)
        self._gen_version = self.learner.version
        self.pipeline = build_reward_pipeline(cfg)
        # Model-based reward modules score with this node's policy (bound only when one needs it).
        self.scorer = attach_scorer(
            self.pipeline, self.policy, self.generator, self.learner, self._sampling()
        )
        self.sources = [
            build_source(s.source, s.dataset, s.config, cfg.tasks.seed, cfg.tasks.size)
            for s in cfg.tasks.sources
        ]
        self.inputs = NodeInputs(cfg, self.sources)  # completion columns, reward-model scores
        self.task_rng = random.Random(seed * 1_000_003 + 1)
        self.tasks = TaskSampler(
            self.sources,
            [s.weight for s in cfg.tasks.sources],
            self.task_rng,
            cfg.tasks.eval_questions,
            build_scheduler(cfg),
        )
        disk, mib = cfg.node.disk, 1024 * 1024
        self.journal = Journal(
            self.data_dir / "journal.log", int(disk.journal_max_mb * mib), disk.journal_keep
        )
        self.rollout_log = (
            Journal(self.data_dir / "rollouts.log", int(disk.rollouts_max_mb * mib), disk.rollouts_keep)
            if cfg.node.record_rollouts
            else None
        )
        self.metrics.watch_process("node", os.getpid)
        if isinstance(self.generator, ProcessGenerator):
            gen = self.generator
            self.metrics.watch_process("generation", lambda: gen.pid)
        self._resume()
        self.generator.sync_weights()  # resumed weights reach a backend with its own copy (process, vLLM)
        self.progress = Progress(cfg.node.progress, cfg.node.rounds, cfg.node.name)
        self.tracking = Tracking.from_config(cfg, self.data_dir)

    def _resume(self) -> None:
        ckpt = load_latest(self.data_dir / "checkpoints", map_location=self.policy.device)
        if ckpt is None:
            dropped = self.journal.rewind_to_round(0)
            if self.rollout_log is not None:
                self.rollout_log.rewind_to_round(0)
            if dropped:
                log.warning("no valid checkpoint: discarded %d journal records of an unfinished run", dropped)
            return
        self.policy.model.load_state_dict(ckpt.model_state)
        self.learner.optimizer.load_state_dict(ckpt.optimizer_state)
        self.learner.version = ckpt.policy_version
        restore_rng(ckpt.state["rng"])
        self.task_rng.setstate(ckpt.state["task_rng"])
        self._load_learned_state(ckpt.state)
        self.round = ckpt.round
        dropped = self.journal.rewind_to_round(ckpt.round)
        if self.rollout_log is not None:
            self.rollout_log.rewind_to_round(ckpt.round)
        log.info(
            "resumed from %s: round %d, policy version %d%s",
            ckpt.path.name,
            ckpt.round,
            ckpt.policy_version,
            f" ({dropped} later rounds will run again)" if dropped else "",
        )

    def _learned_state(self) -> dict[str, Any]:
        """State that reward modules, the scorer's helper models and the task scheduler learn across rounds
        (exploration counts, OPRL's PRM, TVM's value head, recovery estimates), copied for the checkpoint."""
        return {
            "rewards_state": copy.deepcopy(self.pipeline.state_dict()),
            "scorer_state": self.scorer.state_dict() if self.scorer is not None else {},
            "task_schedule": self.tasks.state_dict(),
        }

    def _load_learned_state(self, state: dict[str, Any]) -> None:
        self.pipeline.load_state_dict(state.get("rewards_state") or {})
        if self.scorer is not None and state.get("scorer_state"):
            self.scorer.load_state_dict(state["scorer_state"])
        self.tasks.load_state_dict(state.get("task_schedule") or {})

    def _snapshot(self) -> dict[str, Any]:
        """Everything a checkpoint holds, copied now (cheap next to the write) so the write can run later."""
        # A background write needs copies (training goes on meanwhile); the generation process copies into
        # its shared buffers itself.
        background = self.cfg.trainer.max_staleness > 0 and not isinstance(self.generator, ProcessGenerator)
        model_state = self.policy.model.state_dict()
        optimizer_state = self.learner.optimizer.state_dict()
        if background:
            model_state = {k: v.detach().clone() for k, v in model_state.items()}
            optimizer_state = copy.deepcopy(optimizer_state)
        return {
            "round": self.round,
            "version": self.learner.version,
            "model": model_state,
            "optimizer": optimizer_state,
            "extra": {"task_rng": self.task_rng.getstate(), "rng": rng_state(), **self._learned_state()},
        }

    def _checkpoint_args(self, snap: dict[str, Any]) -> tuple[Any, ...]:
        """``save_checkpoint``'s arguments for a snapshot."""
        root = self.data_dir / "checkpoints"
        keep = self.cfg.node.keep_checkpoints
        return root, snap["round"], snap["version"], snap["model"], snap["optimizer"], snap["extra"], keep

    def _checkpoint_done(self, path: Path) -> None:
        self.last_checkpoint = path
        self.metrics.checkpoint_timestamp.set(time.time())
        log.debug("checkpoint %s", path.name)

    def _write_checkpoint(self, snap: dict[str, Any]) -> None:
        self._checkpoint_done(save_checkpoint(*self._checkpoint_args(snap)))

    def checkpoint(self) -> None:
        """Write a checkpoint of the current round now."""
        self._write_checkpoint(self._snapshot())

    async def _checkpoint_round(self) -> None:
        """Synchronous loop: write now. Overlapped pipeline: snapshot now, write while the next round runs
        (one write in flight at a time; the journal is rewound to the newest durable checkpoint on resume)."""
        await self._await_checkpoint()
        snap = self._snapshot()
        gen = self.generator
        if isinstance(gen, ProcessGenerator):
            gen.submit_checkpoint(*self._checkpoint_args(snap))
            self._ckpt_task = asyncio.create_task(
                asyncio.to_thread(lambda: self._checkpoint_done(gen.wait_checkpoint()))
            )
        elif self.cfg.trainer.max_staleness > 0:
            self._ckpt_task = asyncio.create_task(asyncio.to_thread(self._write_checkpoint, snap))
        else:
            await asyncio.to_thread(self._write_checkpoint, snap)

    async def _await_checkpoint(self) -> None:
        if self._ckpt_task is not None:
            task, self._ckpt_task = self._ckpt_task, None
            await task

    # -- one round ---------------------------------------------------------------------------------------
    def _sampling(self, greedy: bool = False) -> SamplingParams:
        g = self.cfg.generation
        return SamplingParams(g.num_completions, g.temperature, g.top_p, g.max_new_tokens, greedy)

    def _sync_generation_weights(self) -> int:
        """Bring the generation copy up to the learner's weights; returns the version it generates with."""
        with self._weights_lock:
            version = self.learner.version
            if self.gen_policy is not self.policy and self._gen_version != version:
                self.gen_policy.model.load_state_dict(self.policy.model.state_dict())
                self._gen_version = version
            return version

    def generate_local(self, round_: int, n: int) -> tuple[list[RolloutGroup], list[Task], float, int]:
        torch.set_num_threads(self._work_threads)
        version = self._sync_generation_weights()
        tasks = self.tasks.sample(n)
        prompts = prompts_ids(self.policy.tokenizer, [t.question for t in tasks])
        t0 = time.perf_counter()
        outs = self.generator.generate(prompts, self._sampling())
        seconds = time.perf_counter() - t0
        if isinstance(self.generator, ProcessGenerator) and self.generator.last_version is not None:
            version = self.generator.last_version  # the weights the child actually sampled from
        info = PolicyInfo(self.policy.name, version, self.cfg.node.name)
        for comps in outs:
            for c in comps:  # stated to peers (wire field) for their optional off-policy correction
                c.behaviour_logprob = sequence_logprob(c)
        groups = [
            RolloutGroup(t.ref, t.question, t.answer, comps, info, round=round_, extras={PROMPT_IDS: p})
            for t, comps, p in zip(tasks, outs, prompts, strict=True)
        ]
        tokens = sum(len(c.token_ids) for g in groups for c in g.completions)
        return groups, tasks, seconds, tokens

    def score(
        self, groups: list[RolloutGroup], tasks: list[Task | None]
    ) -> tuple[list[list[Sample]], list[ScoredGroup]]:
        samples = [to_samples(g, t, self.policy.tokenizer) for g, t in zip(groups, tasks, strict=True)]
        self.inputs.fill(groups, tasks, samples)
        scored = self.pipeline.score(samples)
        for g, s in zip(groups, scored, strict=True):
            g.rewards = list(s.totals)
            if (
                g.origin == "local"
            ):  # sent to peers as advisory: they order rescoring by it, never train on it
                g.advisory_rewards = list(s.totals)
        return samples, scored

    def rescore_external(self, groups: list[RolloutGroup]) -> list[list[float]]:
        """Local rewards for peers' groups (retokenized first); never the sender's claims.

        Results are cached for the round (the cache holds the groups, so their ids stay unique) so that
        groups picked for training are not scored twice.
        """
        tasks: list[Task | None] = []
        for g in groups:
            retokenize(self.policy, g)
            tasks.append(self._find_task(g))
        samples, scored = self.score(groups, tasks)
        for g, smp, sc in zip(groups, samples, scored, strict=True):
            self._ext_cache[id(g)] = (g, smp, sc)
            g.extras[HAS_SIGNAL] = not sc.zero_variance  # dense per-token rewards count as signal
        return [sc.totals for sc in scored]

    def _find_task(self, group: RolloutGroup) -> Task | None:
        try:
            return self.tasks.find(group.task)
        except SwarmRLError:
            return None

    def train(
        self, local: list[RolloutGroup], samples: list[list[Sample]], scored: list[ScoredGroup]
    ) -> StepStats:
        version = self.learner.version
        for g in local:
            if g.origin == "local" and g.policy.version < version:
                # Stale: the policy being updated is the behaviour reference when the group enters the batch.
                g.extras["stale"] = True
        seqs = train_sequences(
            self.policy, local, samples, scored, self.cfg.trainer.advantage, external=self.external_policy
        )
        torch.set_num_threads(self._work_threads)
        with self._weights_lock:
            stats = self.learner.step(seqs)
        if self.gen_policy is self.policy:
            self.generator.sync_weights()
        return stats

    def evaluate(self) -> float:
        """Greedy exact-match accuracy on held-out questions (never sampled for training), through the same
        code path as ``swarm-node eval``; the per-source figures stay in ``last_eval``."""
        evals = self.tasks.eval_set()
        if not evals:
            return float("nan")
        g = self.cfg.generation
        settings = EvalSettings(max_new_tokens=g.max_new_tokens, temperature=g.temperature, top_p=g.top_p)
        self.last_eval = evaluate_tasks(self.generator, self.policy.tokenizer, evals, settings)
        return self.last_eval.greedy_accuracy

    # -- the loop ----------------------------------------------------------------------------------------
    async def _round(self, round_: int) -> RoundResult:
        cfg = self.cfg
        t_round = time.perf_counter()
        external: list[RolloutGroup] = []
        if self.swarm is not None and cfg.sampling.external_groups:
            external = await asyncio.to_thread(
                self.swarm.sample, cfg.sampling.external_groups, round_, self.rescore_external
            )
        n_local = cfg.sampling.local_groups
        if cfg.sampling.fill_with_local:
            n_local += cfg.sampling.external_groups - len(external)
        pending = self._prefetch.pop(round_, None)
        if pending is not None:
            local, tasks, gen_s, gen_tokens = await pending
            if len(local) < n_local:  # the pool gave fewer useful groups than predicted: the shortfall now
                more, more_tasks, more_s, more_tokens = await asyncio.to_thread(
                    self.generate_local, round_, n_local - len(local)
                )
                local, tasks = local + more, tasks + more_tasks
                gen_s, gen_tokens = gen_s + more_s, gen_tokens + more_tokens
            # More than needed (the pool gave more than predicted): the surplus is not trained on; its
            # generation cost stays counted in generation_tokens.
            local, tasks = local[:n_local], tasks[:n_local]
        else:
            local, tasks, gen_s, gen_tokens = await asyncio.to_thread(self.generate_local, round_, n_local)
        self._last_external = len(external)
        self._launch_prefetch(round_ + 1)
        local_tasks: list[Task | None] = list(tasks)
        own_samples, own_scored = await asyncio.to_thread(self.score, local, local_tasks)
        if self.swarm is not None and cfg.swarm.publish_groups:
            await self.swarm.publish(local[: cfg.swarm.publish_groups], round_)
        zero_var = [s.zero_variance for s in own_scored]
        self.tasks.observe(local_tasks, zero_var)  # learning signal per source, for tasks.schedule
        keep = [not (cfg.sampling.filter_local and z) for z in zero_var]
        groups = [g for g, k in zip(local, keep, strict=True) if k]
        samples = [x for x, k in zip(own_samples, keep, strict=True) if k]
        scored = [x for x, k in zip(own_scored, keep, strict=True) if k]
        for g in external:
            if id(g) not in self._ext_cache:  # the sampler did not re-score it (e.g. strategy "uniform")
                self.rescore_external([g])
            _, smp, sc = self._ext_cache[id(g)]
            groups.append(g)
            samples.append(smp)
            scored.append(sc)
        self._ext_cache.clear()
        stats = await asyncio.to_thread(self.train, groups, samples, scored)
        eval_acc = None
        if cfg.node.eval_every and round_ % cfg.node.eval_every == 0:
            eval_acc = await asyncio.to_thread(self.evaluate)
        rewards = [r for s in own_scored for r in s.totals]
        accuracy = [a for s in own_scored for a in s.accuracy]
        module_means = {
            name: _mean([float(v) for s in own_scored for v in s.modules.get(name, []) if v is not None])
            for name in self.pipeline.module_names
        }
        ext_rewards = [r for s in scored[len(scored) - len(external) :] for r in s.totals] if external else []
        record: dict[str, Any] = {
            "kind": "round",
            "round": round_,
            "time": time.time(),
            "policy_version": self.learner.version,
            "generated_version": local[0].policy.version if local else None,
            "reward_mean": _mean(rewards),
            "reward_std": float(np.std(rewards)) if rewards else 0.0,
            "accuracy": _mean(accuracy),
            "modules": module_means,
            "zero_variance_fraction": _mean([float(z) for z in zero_var]),
            "local_groups": len(groups) - len(external),
            "external_groups": len(external),
            "external_reward_mean": _mean(ext_rewards) if ext_rewards else None,
            "trained_reward_mean": _mean([r for s in scored for r in s.totals]),
            "loss": stats.loss,
            "kl": stats.kl,
            "clip_fraction": stats.clip_fraction,
            "clip_fraction_by_origin": stats.clip_fraction_by_origin,
            "ratio_mean_by_origin": stats.ratio_mean_by_origin,
            "external_is_weight": stats.external_is_weight,
            "truncated_fraction": truncated_fraction(local),
            "truncated_masked": stats.truncated_masked,
            "lr": stats.lr,
            "generation_tokens": gen_tokens,
            "generation_seconds": gen_s,
            "tokens_per_second": gen_tokens / gen_s if gen_s > 0 else 0.0,
            "train_seconds": stats.seconds,
            "optimizer_steps": stats.optimizer_steps,
            "round_seconds": time.perf_counter() - t_round,
            "eval_accuracy": eval_acc,
            "eval_by_source": self.last_eval.by_source()
            if eval_acc is not None and self.last_eval is not None
            else None,
        }
        return RoundResult(round_, record, local)

    def _local_budget(self) -> int:
        """Own groups to generate ahead for the next round: I, plus with ``fill_with_local`` the shortfall
        predicted from this round's realised J (the next round corrects a wrong guess: it generates the rest,
        or leaves the surplus untrained), so a round trains on I + J groups as in the synchronous loop."""
        s = self.cfg.sampling
        if not s.fill_with_local:
            return s.local_groups
        return s.local_groups + s.external_groups - self._last_external

    def _launch_prefetch(self, round_: int) -> None:
        """With ``max_staleness`` > 0, generate round ``round_`` while the current round trains.

        One round is generated ahead (a bounded queue of one): its samples come from the policy before the
        current round's update, so they are at most one round stale.
        """
        total = self.cfg.node.rounds
        if self.cfg.trainer.max_staleness == 0 or (total and round_ > total) or self._stop.is_set():
            return
        self._prefetch[round_] = asyncio.create_task(
            asyncio.to_thread(self.generate_local, round_, self._local_budget())
        )

    def _record(self, res: RoundResult) -> None:
        rec, m = res.record, self.metrics
        self.journal.append(rec)
        if self.rollout_log is not None:
            self.rollout_log.append(
                {
                    "kind": "rollouts",
                    "round": res.round,
                    "groups": [
                        {
                            "task": [
                                g.task.source,
                                g.task.dataset,
                                g.task.config_digest,
                                g.task.seed,
                                g.task.index,
                            ],
                            "question": g.question,
                            "answer": g.answer,
                            "origin": g.origin,
                            "completions": [c.text for c in g.completions],
                            "rewards": g.rewards,
                        }
                        for g in res.local
                    ],
                }
            )
        m.round.set(res.round)
        m.policy_version.set(rec["policy_version"])
        m.reward_mean.labels(module="total").set(rec["reward_mean"])
        for name, value in rec["modules"].items():
            m.reward_mean.labels(module=name).set(value)
        m.accuracy.set(rec["accuracy"])
        m.zero_adv_fraction.set(rec["zero_variance_fraction"])
        if rec["eval_accuracy"] is not None:
            m.eval_accuracy.set(rec["eval_accuracy"])
        m.train_groups.labels(origin="local").inc(rec["local_groups"])
        m.train_groups.labels(origin="external").inc(rec["external_groups"])
        m.generation_tokens.inc(rec["generation_tokens"])
        m.generation_seconds.observe(rec["generation_seconds"])
        if rec["optimizer_steps"]:
            m.train_step.observe(rec["train_seconds"] / rec["optimizer_steps"])
        m.train_loss.set(rec["loss"])
        m.truncated_fraction.set(rec["truncated_fraction"])
        if rec["optimizer_steps"]:
            m.learning_rate.set(rec["lr"])
        m.train_kl.set(rec["kl"])
        for origin, frac in rec["clip_fraction_by_origin"].items():
            m.train_clip_fraction.labels(origin=origin).set(frac)
        m.train_clip_fraction.labels(origin="all").set(rec["clip_fraction"])
        if self.swarm is not None:
            m.pool_groups.set(self.swarm.pool_size())
            self.swarm.observe_round(
                rec["reward_mean"], rec["zero_variance_fraction"], rec["external_groups"]
            )

    def request_stop(self) -> None:
        self._stops += 1
        if self._stops == 1:
            log.info("stop requested: finishing the round in flight, then checkpointing (again to force)")
            self._stop.set()
        else:
            log.warning("second stop request: exiting now; the round in flight is lost")
            os._exit(130)

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(sig, self.request_stop)

    async def start(self) -> None:
        """Load everything, resume, and start the metrics endpoint and the swarm (once: ``run`` after
        ``start`` does not start again)."""
        if self._healthy:
            return
        self._install_signals()
        await asyncio.to_thread(self._setup)
        cfg = self.cfg
        if cfg.node.metrics_port >= 0:
            try:
                self.server = MetricsServer(
                    self.metrics, cfg.node.metrics_host, cfg.node.metrics_port, self.healthy
                )
            except OSError as exc:
                raise NodeError(
                    f"cannot serve metrics on {cfg.node.metrics_host}:{cfg.node.metrics_port} ({exc.strerror}); "
                    "pass --metrics-port 0 for a free port or -1 to disable"
                ) from exc
            self.server.start()
            log.info("metrics at %s (health at /healthz)", self.server.url)
        self.metrics.round.set(self.round)
        self.metrics.policy_version.set(self.learner.version)
        if cfg.swarm.transport != "none":
            self.swarm = await self._start_swarm()
        from swarmrl.node.control import start_control

        self.control = await start_control(self)
        self._healthy = True
        self.metrics.up.set(1)

    async def _start_swarm(self) -> Any:
        from swarmrl.node.swarm_link import start_swarm

        return await start_swarm(self)

    def healthy(self) -> bool:
        return self._healthy

    async def run(self) -> int:
        """Run rounds until ``node.rounds`` is reached or a stop is requested; returns an exit code."""
        await self.start()
        total = self.cfg.node.rounds
        try:
            while not self._stop.is_set() and (total == 0 or self.round < total):
                res = await self._round(self.round + 1)
                self.round = res.round
                self._record(res)
                self.progress.update(res.record)
                if self.tracking is not None:
                    self.tracking.round(res.record, res.local)
                if self.round % self.cfg.node.checkpoint_every == 0:
                    await self._checkpoint_round()
            if self.round % self.cfg.node.checkpoint_every != 0:
                await self._checkpoint_round()
            await self._await_checkpoint()
        finally:
            await self.close()
        self.progress.finish(self.data_dir, self.last_checkpoint)
        log.info("stopped at round %d, policy version %d", self.round, self.learner.version)
        return 0

    async def close(self) -> None:
        for task in self._prefetch.values():
            with contextlib.suppress(Exception):
                await task  # a generation thread cannot be interrupted; let it finish, drop its result
        self._prefetch.clear()
        with contextlib.suppress(Exception):
            await self._await_checkpoint()
        self._healthy = False
        self.metrics.up.set(0)
        generator = getattr(self, "generator", None)
        if isinstance(generator, ProcessGenerator):
            generator.close()
        if self._gen_worker is not None:  # started by the CLI, never used (set-up failed)
            self._gen_worker.stop(timeout=0)
            self._gen_worker = None
        if self.control is not None:
            await self.control.close()
            self.control = None
        if self.swarm is not None:
            await self.swarm.close()
            self.swarm = None
        if self.server is not None:
            self.server.close()
            self.server = None
        self.progress.close()
        if self.tracking is not None:
            self.tracking.close()
            self.tracking = None
        for j in (getattr(self, "journal", None), getattr(self, "rollout_log", None)):
            if j is not None:
                j.close()
