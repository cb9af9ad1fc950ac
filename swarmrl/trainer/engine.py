"""The node's model work behind one interface: generation (synchronous, overlapped in a thread, or in a child
process), the optimizer step, and checkpoint writes (now, or in the background while the next round runs).

The round loop asks for "completions for these prompts", "a step on these sequences" and "write this
checkpoint"; which of the three generation set-ups runs, the weight copy and its lock, the thread counts and
who writes the checkpoint file are decided here once, from the config, and never inspected again.

- synchronous (``trainer.max_staleness`` 0): one set of weights; generation and training alternate.
- thread overlap (``max_staleness`` > 0, in-process backend): generation of round r+1 runs in a thread while
  round r trains; it samples from its own copy of the weights, refreshed under a lock before each generation.
- process overlap (``generation.worker: process``, the CPU default with overlap): a child process samples
  from weights in shared memory and also writes checkpoints from shared buffers (see ``genprocess``).
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from swarmrl.protocol.types import Completion
from swarmrl.trainer.checkpoint import save_checkpoint
from swarmrl.trainer.generation import Generator, SamplingParams, build_generator
from swarmrl.trainer.genlaunch import GenerationWorker
from swarmrl.trainer.genprocess import ProcessGenerator
from swarmrl.trainer.learner import Learner, StepStats, TrainSequence
from swarmrl.trainer.policy import Policy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointJob:
    """``save_checkpoint``'s arguments: everything a checkpoint holds, already copied where it must be."""

    root: Path
    round: int
    version: int
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any]
    extra: dict[str, Any]
    keep: int

    def args(self) -> tuple[Any, ...]:
        return (
            self.root,
            self.round,
            self.version,
            self.model_state,
            self.optimizer_state,
            self.extra,
            self.keep,
        )


class ModelEngine:
    """Generation, training steps and checkpoint writes for one policy.

    ``overlap``: generation may run while training (``trainer.max_staleness`` > 0). ``worker``: a child
    process to generate in (``genlaunch``); when given, generation runs there. ``threads``: the cores this
    node may use; with overlap, generation and training get half each (OpenMP thread counts are per calling
    thread) instead of both spinning on all of them.
    """

    def __init__(
        self,
        policy: Policy,
        learner: Learner,
        *,
        backend: str,
        overlap: bool,
        threads: int,
        trust_remote_code: bool = False,
        worker: GenerationWorker | None = None,
    ) -> None:
        self.policy = policy
        self.learner = learner
        self.overlap = overlap
        gen_threads = max(1, threads // 2)
        self.work_threads = max(1, threads - gen_threads) if overlap else threads
        self._lock = threading.Lock()
        self.gen_policy = policy
        self.generator: Generator
        self._process: ProcessGenerator | None = None
        if worker is not None:
            self._process = ProcessGenerator(
                policy, gen_threads, lambda: learner.version, trust_remote_code, worker
            )
            self.generator = self._process
        else:
            if overlap and backend == "hf":
                self.gen_policy = replace(policy, model=copy.deepcopy(policy.model).eval())
            self.generator = build_generator(backend, self.gen_policy)
        self._gen_version = learner.version

    # -- generation ----------------------------------------------------------------------------------------
    @property
    def generation_pid(self) -> Callable[[], int | None] | None:
        """The generation child's pid getter (for its memory gauge), None when generation is in-process."""
        proc = self._process
        return None if proc is None else (lambda: proc.pid)

    def _sync_generation_weights(self) -> int:
        """Bring the generation copy up to the learner's weights; returns the version it generates with."""
        with self._lock:
            version = self.learner.version
            if self.gen_policy is not self.policy and self._gen_version != version:
                self.gen_policy.model.load_state_dict(self.policy.model.state_dict())
                self._gen_version = version
            return version

    def generate(
        self, prompts: list[list[int]], params: SamplingParams
    ) -> tuple[list[list[Completion]], int]:
        """Completions for each prompt and the policy version that sampled them."""
        torch.set_num_threads(self.work_threads)
        version = self._sync_generation_weights()
        outs = self.generator.generate(prompts, params)
        if self._process is not None and self._process.last_version is not None:
            version = self._process.last_version  # the weights the child actually sampled from
        return outs, version

    def sync_weights(self) -> None:
        """Publish the current weights to a backend with its own copy (after a resume)."""
        self.generator.sync_weights()

    # -- training ------------------------------------------------------------------------------------------
    def step(self, seqs: list[TrainSequence]) -> StepStats:
        torch.set_num_threads(self.work_threads)
        with self._lock:
            stats = self.learner.step(seqs)
        if self.gen_policy is self.policy:
            self.generator.sync_weights()
        return stats

    # -- checkpoints ---------------------------------------------------------------------------------------
    @property
    def copies_state(self) -> bool:
        """Whether a checkpoint's state must be copied when taken: it is written in the background from an
        in-process thread while training goes on (the child process copies into its own buffers)."""
        return self.overlap and self._process is None

    @property
    def writes_in_background(self) -> bool:
        return self.overlap or self._process is not None

    def write_checkpoint(self, job: CheckpointJob) -> Callable[[], Path]:
        """Start writing ``job``; returns a blocking call that finishes it and gives the path (run it in a
        thread). With a child process the child writes from shared buffers (copied here, now)."""
        proc = self._process
        if proc is not None:
            proc.submit_checkpoint(*job.args())
            return proc.wait_checkpoint
        return lambda: save_checkpoint(*job.args())

    def close(self) -> None:
        if self._process is not None:
            self._process.close()
