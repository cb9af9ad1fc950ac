"""Generation in a child process: its own interpreter (own GIL), weights shared through shared memory.

Why: with ``trainer.max_staleness: 1`` the node generates round r+1 while round r trains. In one process the
two fight for the GIL; on small models (the embedded default, laptop-sized policies) both are dominated by
Python overhead around small tensor ops, so a second *thread* overlaps almost nothing. A child process runs
the sampling loop truly in parallel.

How:

* The parent keeps one CPU shared-memory copy of the policy's ``state_dict`` (``share_memory_()``; handed to
  the child once, as file descriptors, when it starts) and a version counter. After every optimizer step the node
  calls ``sync_weights()``: the parent copies its weights into that buffer under the counter's lock and
  bumps the version (a few hundred microseconds for millions of parameters).
* The child builds the same architecture from the model's config (no download, no disk read), and before
  each request copies the shared weights into its own model when the version moved, under the same lock,
  so it never samples from half-written weights. It replies with the completions and the version it used
  (the ``PolicyInfo`` version of the groups).
* Requests go one at a time over a pipe (a lock serialises callers: prefetch, evaluation, model-based
  reward modules). Each carries a seed drawn from the parent's torch RNG, so a run is reproducible from the
  node seed.
* A child that dies (OOM killer, a signal) is restarted once per request; a request that still fails
  raises ``GenerationError`` with the exit code. ``close()`` stops it (and it exits by itself when the
  parent's end of the pipe closes).

Not for peft-wrapped models (the adapter weights would have to be merged per sync) or vLLM (an engine of
its own): the node keeps those in-process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from swarmrl.errors import CheckpointError, SwarmRLError
from swarmrl.protocol.types import Completion
from swarmrl.trainer.checkpoint import save_checkpoint
from swarmrl.trainer.generation import SamplingParams
from swarmrl.trainer.genlaunch import GenerationWorker, Spec, fill, flatten, launch
from swarmrl.trainer.policy import Policy

log = logging.getLogger(__name__)

#: How long the parent waits between liveness checks of the child while a request is out.
_POLL_S = 0.5
#: How long a child gets to start (import torch and transformers, build the model) before it is given up.
_START_TIMEOUT_S = 300.0


_SHM_HINT = (
    "shared memory (/dev/shm) holds about 4x the model (weights + checkpoint buffers): enlarge it (docker: "
    "--shm-size / compose shm_size) or set generation.worker: thread"
)


class GenerationError(SwarmRLError):
    """The generation process failed or died."""


def _receive(conn: Connection, proc: Any, timeout: float | None) -> Any:
    """The child's next message on ``conn``; ``GenerationError`` when it died (or stayed silent past
    ``timeout`` seconds) or the pipe is closed."""
    waited = 0.0
    try:
        while not conn.poll(_POLL_S):
            waited += _POLL_S
            if not proc.is_alive():
                raise GenerationError(f"the generation process exited with code {proc.exitcode}")
            if timeout is not None and waited >= timeout:
                raise GenerationError(f"the generation process did not answer within {timeout:.0f}s")
        return conn.recv()
    except (EOFError, OSError) as exc:
        proc.join(5)
        raise GenerationError(f"the generation process exited with code {proc.exitcode}") from exc


class ProcessGenerator:
    """The ``Generator`` interface over a child process; ``version()`` names the weights ``sync_weights``
    publishes (the learner's policy version). ``worker``: a child already started by ``genlaunch.launch``
    (the CLI starts it early); one is started here otherwise."""

    def __init__(
        self,
        policy: Policy,
        threads: int,
        version: Callable[[], int],
        trust_remote_code: bool = False,
        worker: GenerationWorker | None = None,
    ) -> None:
        if hasattr(policy.model, "peft_config"):
            raise GenerationError("a peft (LoRA) model cannot generate in a separate process; use the thread")
        self.policy = policy
        self._version = version
        self._spec = Spec(
            config=policy.model.config,
            dtype=next(policy.model.parameters()).dtype,
            device=str(policy.device),
            tokenizer=policy.tokenizer,
            name=policy.name,
            threads=max(1, threads),
            trust_remote_code=trust_remote_code,
        )
        try:
            self._shared = {
                k: v.detach().to("cpu", copy=True).share_memory_()
                for k, v in policy.model.state_dict().items()
            }
        except RuntimeError as exc:
            raise GenerationError(
                f"cannot share the weights with the generation process: {exc}; {_SHM_HINT}"
            ) from exc
        self._lock = threading.Lock()
        self._worker: GenerationWorker | None = worker if worker is not None else launch()
        self._counter = self._worker.version
        self._ready = False
        self.last_version: int | None = None
        self._slots: list[torch.Tensor] = []
        self._ckpt_pid: int | None = None
        self._ckpt_worker: GenerationWorker | None = None
        self._pending: tuple[Path, int, int, Any, int] | None = None
        self.sync_weights()
        self._init()

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return None if self._worker is None else int(self._worker.process.pid)

    def _init(self) -> None:
        """Send the model spec and the shared weights (the child builds its model while the parent goes on)."""
        if self._worker is None:
            raise GenerationError("the generation process is closed")
        try:
            self._worker.conn.send(("init", self._spec, self._shared))
        except (OSError, ValueError) as exc:
            raise GenerationError(f"cannot reach the generation process: {exc}") from exc

    def _recv(self, timeout: float | None) -> tuple[str, Any, Any]:
        """The child's next message on the generation pipe."""
        if self._worker is None:
            raise GenerationError("the generation process is closed")
        msg: tuple[str, Any, Any] = _receive(self._worker.conn, self._worker.process, timeout)
        return msg

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        kind, payload, extra = self._recv(_START_TIMEOUT_S)
        if kind != "ready":
            raise GenerationError(f"the generation process could not start: {payload}\n{extra}")
        self._ready = True
        log.debug("generation process %s ready", self.pid)

    def wait_ready(self) -> None:
        """Block until the child has built its model (the first request waits for this anyway)."""
        with self._lock:
            self._ensure_ready()

    def _restart(self) -> None:
        if self._worker is not None:
            self._worker.stop(timeout=0)
        self._worker = launch(self._counter)
        self._ready = False
        self._init()

    # -- checkpoints, written by the child ---------------------------------------------------------------
    def submit_checkpoint(
        self,
        root: Path,
        round_: int,
        version: int,
        model_state: dict[str, Any],
        optimizer_state: dict[str, Any],
        extra: dict[str, Any],
        keep: int,
    ) -> None:
        """Copy the state into the shared buffers and have the child write it; ``wait_checkpoint`` collects
        the result. One write at a time: the buffers are reused by the next one."""
        skeleton, tensors = flatten(
            (model_state, optimizer_state, extra), lambda x: isinstance(x, torch.Tensor)
        )
        with self._lock:
            worker = self._worker
        if worker is None:
            raise CheckpointError("the generation process is closed")
        shapes = [(t.shape, t.dtype) for t in tensors]
        fresh = self._ckpt_pid != worker.process.pid or shapes != [(b.shape, b.dtype) for b in self._slots]
        with torch.no_grad():
            if fresh:
                try:
                    self._slots = [t.detach().to("cpu", copy=True).share_memory_() for t in tensors]
                except RuntimeError as exc:
                    raise CheckpointError(f"cannot allocate checkpoint buffers: {exc}; {_SHM_HINT}") from exc
            else:
                for buf, t in zip(self._slots, tensors, strict=True):
                    buf.copy_(t)
        self._pending = (root, round_, version, skeleton, keep)
        try:
            if fresh:
                worker.ckpt_conn.send(("slots", self._slots))
                self._ckpt_pid = worker.process.pid
            worker.ckpt_conn.send(("write", str(root), round_, version, skeleton, keep))
            self._ckpt_worker = worker
        except (OSError, ValueError):
            self._ckpt_worker = None  # wait_checkpoint writes it here

    def wait_checkpoint(self) -> Path:
        """The path of the checkpoint submitted last. If the child died meanwhile, it is written here from
        the shared buffers (they still hold the state), so a checkpoint is never lost to a child's death."""
        if self._pending is None:
            raise CheckpointError("no checkpoint was submitted")
        root, round_, version, skeleton, keep = self._pending
        self._pending = None
        worker, self._ckpt_worker = self._ckpt_worker, None
        if worker is not None:
            try:
                kind, payload = _receive(worker.ckpt_conn, worker.process, None)
            except GenerationError:
                log.warning(
                    "the generation process died while writing checkpoint %d; writing it here", round_
                )
            else:
                if kind != "done":
                    raise CheckpointError(f"cannot write checkpoint of round {round_}: {payload}")
                return Path(payload)
        model_state, optimizer_state, extra = fill(skeleton, self._slots)
        return save_checkpoint(root, round_, version, model_state, optimizer_state, extra, keep)

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None

    # -- the Generator interface -------------------------------------------------------------------------
    def sync_weights(self) -> None:
        state = self.policy.model.state_dict()
        with torch.no_grad(), self._counter.get_lock():
            for name, buf in self._shared.items():
                buf.copy_(state[name])
            self._counter.value = int(self._version())

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._ensure_ready()
                    if self._worker is None:
                        raise GenerationError("the generation process is closed")
                    self._worker.conn.send(("generate", prompts, params, seed))
                    kind, payload, extra = self._recv(None)
                except (GenerationError, OSError) as exc:
                    if attempt == 2 or self._worker is None:
                        raise GenerationError(str(exc)) from exc
                    log.warning("%s; restarting it", exc)
                    self._restart()
                    continue
                if kind != "ok":
                    raise GenerationError(f"generation failed in the generation process: {payload}\n{extra}")
                self.last_version = int(extra)
                out: list[list[Completion]] = payload
                return out
        raise GenerationError("unreachable")  # pragma: no cover
