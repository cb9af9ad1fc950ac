"""Assembling a node from its config: the policy, learner and model engine, the reward pipeline and its
scorer, task sources, journals, checkpoints (resumed here), progress and trackers.

``Parts`` declares what a node is made of; ``assemble`` builds them in order (it runs in a worker thread:
loading a model takes a while) and resumes from the newest checkpoint.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch

from swarmrl.config import NodeConfig
from swarmrl.errors import NodeError
from swarmrl.node.checkpoints import Checkpoints, Learned
from swarmrl.node.external import ExternalScoring
from swarmrl.node.inputs import NodeInputs
from swarmrl.node.journal import Journal
from swarmrl.node.metrics import NodeMetrics
from swarmrl.node.progress import Progress
from swarmrl.node.rollouts import ExternalPolicy
from swarmrl.node.saved_config import write_node_config
from swarmrl.node.tracking import Tracking
from swarmrl.node.validate import build_reward_pipeline, build_scheduler, schedule_horizon
from swarmrl.protocol.types import RolloutGroup
from swarmrl.rewards import Sample
from swarmrl.rewards.pipeline import RewardPipeline, ScoredGroup
from swarmrl.tasks import Task, TaskSampler, TaskSource, build_source
from swarmrl.trainer.engine import ModelEngine
from swarmrl.trainer.generation import Generator, SamplingParams
from swarmrl.trainer.genlaunch import GenerationWorker, launch, wants_process
from swarmrl.trainer.learner import Learner
from swarmrl.trainer.policy import Policy, load_policy
from swarmrl.trainer.scorer import attach_scorer

log = logging.getLogger(__name__)

MIB = 1024 * 1024


class Parts:
    """What a node is made of once assembled."""

    cfg: NodeConfig
    data_dir: Path
    metrics: NodeMetrics
    round: int
    policy: Policy
    learner: Learner
    engine: ModelEngine
    pipeline: RewardPipeline
    scorer: object | None
    sources: list[TaskSource]
    inputs: NodeInputs
    task_rng: random.Random
    tasks: TaskSampler
    journal: Journal
    rollout_log: Journal | None
    checkpoints: Checkpoints
    external: ExternalScoring
    external_policy: ExternalPolicy
    progress: Progress
    tracking: Tracking | None

    @property
    def generator(self) -> Generator:
        return self.engine.generator

    def score(
        self, groups: list[RolloutGroup], tasks: list[Task | None]
    ) -> tuple[list[list[Sample]], list[ScoredGroup]]:
        """Local rewards for groups against their tasks (the node defines it)."""
        raise NotImplementedError

    def close_parts(self) -> None:
        self.progress.close()
        if self.tracking is not None:
            self.tracking.close()
            self.tracking = None
        self.journal.close()
        if self.rollout_log is not None:
            self.rollout_log.close()


def sampling_params(cfg: NodeConfig) -> SamplingParams:
    """The node's sampling of its own groups (``generation.*``)."""
    g = cfg.generation
    return SamplingParams(g.num_completions, g.temperature, g.top_p, g.max_new_tokens, False)


def _quiet_transformers() -> None:
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - a core dependency
        pass


def _engine(
    cfg: NodeConfig, policy: Policy, learner: Learner, worker: GenerationWorker | None
) -> ModelEngine:
    """Generation in a child process when the config (and the device) want one, else in this process."""
    if not wants_process(cfg, policy.device.type):
        if worker is not None:  # the CLI guessed the device wrong
            worker.stop(timeout=0)
        worker = None
    elif worker is None:
        worker = launch()
    return ModelEngine(
        policy,
        learner,
        backend=cfg.generation.backend,
        overlap=cfg.trainer.max_staleness > 0,
        threads=cfg.node.threads or os.cpu_count() or 1,
        trust_remote_code=cfg.model.trust_remote_code,
        worker=worker,
    )


def assemble(node: Parts, worker: GenerationWorker | None) -> None:
    """Build every part of ``node`` from ``node.cfg`` and resume from its newest checkpoint."""
    cfg = node.cfg
    try:
        node.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NodeError(f"cannot create data directory '{node.data_dir}': {exc}") from exc
    write_node_config(cfg, node.data_dir)  # export and eval rebuild the policy from it
    _quiet_transformers()
    torch.set_num_threads(cfg.node.threads or os.cpu_count() or 1)
    seed = cfg.node.seed
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    node.policy = load_policy(cfg.model, cfg.tasks, node.data_dir, seed)
    log.info(
        "policy %s: %.2fM parameters on %s (%.1fs)",
        node.policy.name,
        node.policy.num_parameters() / 1e6,
        node.policy.device,
        time.perf_counter() - t0,
    )
    node.learner = Learner(node.policy, cfg.trainer, schedule_steps=schedule_horizon(cfg))
    node.engine = _engine(cfg, node.policy, node.learner, worker)
    node.pipeline = build_reward_pipeline(cfg)
    # Model-based reward modules score with this node's policy (bound only when one needs it).
    node.scorer = attach_scorer(
        node.pipeline, node.policy, node.engine.generator, node.learner, sampling_params(cfg)
    )
    node.sources = [
        build_source(s.source, s.dataset, s.config, cfg.tasks.seed, cfg.tasks.size) for s in cfg.tasks.sources
    ]
    node.inputs = NodeInputs(cfg, node.sources)  # completion columns, reward-model scores
    node.task_rng = random.Random(seed * 1_000_003 + 1)
    node.tasks = TaskSampler(
        node.sources,
        [s.weight for s in cfg.tasks.sources],
        node.task_rng,
        cfg.tasks.eval_questions,
        build_scheduler(cfg),
    )
    disk = cfg.node.disk
    node.journal = Journal(node.data_dir / "journal.log", int(disk.journal_max_mb * MIB), disk.journal_keep)
    node.rollout_log = (
        Journal(node.data_dir / "rollouts.log", int(disk.rollouts_max_mb * MIB), disk.rollouts_keep)
        if cfg.node.record_rollouts
        else None
    )
    node.metrics.watch_process("node", os.getpid)
    pid = node.engine.generation_pid
    if pid is not None:
        node.metrics.watch_process("generation", pid)
    s = cfg.sampling
    node.external_policy = ExternalPolicy.from_config(
        s.external_samples, s.offpolicy_correction, s.offpolicy_cap
    )
    node.external = ExternalScoring(node.policy, node.tasks.resolve, node.score)
    node.checkpoints = Checkpoints(
        node.data_dir / "checkpoints",
        cfg.node.keep_checkpoints,
        node.engine,
        Learned(node.pipeline, node.scorer, node.tasks, node.task_rng),
        [j for j in (node.journal, node.rollout_log) if j is not None],
        lambda _path: node.metrics.checkpoint_timestamp.set(time.time()),
    )
    node.round = node.checkpoints.resume()
    node.engine.sync_weights()  # resumed weights reach a backend with its own copy (process, vLLM)
    node.progress = Progress(cfg.node.progress, cfg.node.rounds, cfg.node.name)
    node.tracking = Tracking.from_config(cfg, node.data_dir)
