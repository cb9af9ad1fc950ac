"""A node's checkpoints: what one holds (weights, optimizer, RNGs, the state reward modules, the scorer's
helper models and the task scheduler learned), taking one, writing it (now or while the next round runs,
one write in flight at a time), and resuming from the newest valid one with the journal rewound to it.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarmrl.node.journal import Journal
from swarmrl.rewards.pipeline import RewardPipeline
from swarmrl.tasks import TaskSampler
from swarmrl.trainer.checkpoint import load_latest, restore_rng, rng_state
from swarmrl.trainer.engine import CheckpointJob, ModelEngine

log = logging.getLogger(__name__)


@dataclass
class Learned:
    """The parts of a node whose state a checkpoint carries besides the weights and the optimizer."""

    pipeline: RewardPipeline
    scorer: Any  # trainer.scorer.BoundScorer | None (state_dict / load_state_dict)
    tasks: TaskSampler
    task_rng: random.Random

    def state(self) -> dict[str, Any]:
        """Exploration counts, OPRL's PRM, TVM's value head, recovery estimates; copied for the checkpoint."""
        return {
            "task_rng": self.task_rng.getstate(),
            "rng": rng_state(),
            "rewards_state": copy.deepcopy(self.pipeline.state_dict()),
            "scorer_state": self.scorer.state_dict() if self.scorer is not None else {},
            "task_schedule": self.tasks.state_dict(),
        }

    def load(self, state: dict[str, Any]) -> None:
        restore_rng(state["rng"])
        self.task_rng.setstate(state["task_rng"])
        self.pipeline.load_state_dict(state.get("rewards_state") or {})
        if self.scorer is not None and state.get("scorer_state"):
            self.scorer.load_state_dict(state["scorer_state"])
        self.tasks.load_state_dict(state.get("task_schedule") or {})


class Checkpoints:
    """Takes, writes and resumes checkpoints under ``DATA/checkpoints``."""

    def __init__(
        self,
        root: Path,
        keep: int,
        engine: ModelEngine,
        learned: Learned,
        journals: list[Journal],
        on_written: Callable[[Path], None],
    ) -> None:
        self.root = root
        self.keep = keep
        self.engine = engine
        self.learned = learned
        self.journals = journals
        self.last: Path | None = None
        self._on_written = on_written
        self._in_flight: asyncio.Task[None] | None = None

    def resume(self) -> int:
        """Load the newest valid checkpoint; returns its round (0 when starting fresh). The journals are
        rewound to it: rounds after it run again."""
        policy, learner = self.engine.policy, self.engine.learner
        ckpt = load_latest(self.root, map_location=policy.device)
        if ckpt is None:
            dropped = self._rewind(0)
            if dropped:
                log.warning("no valid checkpoint: discarded %d journal records of an unfinished run", dropped)
            return 0
        policy.model.load_state_dict(ckpt.model_state)
        learner.optimizer.load_state_dict(ckpt.optimizer_state)
        learner.version = ckpt.policy_version
        self.learned.load(ckpt.state)
        dropped = self._rewind(ckpt.round)
        log.info(
            "resumed from %s: round %d, policy version %d%s",
            ckpt.path.name,
            ckpt.round,
            ckpt.policy_version,
            f" ({dropped} later rounds will run again)" if dropped else "",
        )
        return ckpt.round

    def _rewind(self, round_: int) -> int:
        """Drop journal records after ``round_`` in every journal; returns the main journal's count."""
        counts = [j.rewind_to_round(round_) for j in self.journals]
        return counts[0] if counts else 0

    def take(self, round_: int) -> CheckpointJob:
        """Everything a checkpoint of ``round_`` holds, copied now where a background write needs it."""
        learner = self.engine.learner
        model_state = self.engine.policy.model.state_dict()
        optimizer_state = learner.optimizer.state_dict()
        if self.engine.copies_state:
            model_state = {k: v.detach().clone() for k, v in model_state.items()}
            optimizer_state = copy.deepcopy(optimizer_state)
        return CheckpointJob(
            self.root,
            round_,
            learner.version,
            model_state,
            optimizer_state,
            self.learned.state(),
            self.keep,
        )

    def _done(self, path: Path) -> None:
        self.last = path
        self._on_written(path)
        log.debug("checkpoint %s", path.name)

    def write_now(self, round_: int) -> None:
        """Write a checkpoint of the current state, blocking."""
        self._done(self.engine.write_checkpoint(self.take(round_))())

    async def write(self, round_: int) -> None:
        """Synchronous loop: write now. Overlapped loop: take it now, write while the next round runs."""
        await self.settle()
        finish = self.engine.write_checkpoint(self.take(round_))

        def run() -> None:
            self._done(finish())

        if self.engine.writes_in_background:
            self._in_flight = asyncio.create_task(asyncio.to_thread(run))
        else:
            await asyncio.to_thread(run)

    async def settle(self) -> None:
        """Wait for the write in flight, if any."""
        if self._in_flight is not None:
            task, self._in_flight = self._in_flight, None
            await task
