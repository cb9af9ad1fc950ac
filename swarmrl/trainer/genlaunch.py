"""Starting the generation process (torch-free, so the CLI can start it before it imports torch itself).

Importing torch and transformers takes seconds; a child that only started once the node had loaded its
policy would add those seconds to the node's start. ``launch()`` spawns the child at once; it imports in
parallel with the parent and then waits for its model spec and the shared weights (``ProcessGenerator``
sends them). The child's side of the protocol is ``child_main``:

``("init", spec, shared)`` -> ``("ready", None, None)`` once the model is built; then per request
``("generate", prompts, params, seed)`` -> ``("ok", completions, version)`` or ``("error", text, traceback)``;
``("stop",)`` or a closed pipe ends it.

The child also writes the node's checkpoints (``trainer.max_staleness > 0`` writes them in the background):
on a second pipe, ``("slots", tensors)`` hands it shared-memory buffers once (again when their shapes change)
and ``("write", root, round, version, skeleton, keep)`` writes the state whose tensors are in those buffers
(``skeleton`` is the state with each tensor replaced by its ``Slot``) -> ``("done", path)`` or
``("error", text)``. Serialising, hashing and fsyncing a checkpoint costs as much CPU as a training step of a
small model; here it runs beside generation on the child's core instead of on the trainer's.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Slot:
    """Stands for the tensor at ``index`` of the shared buffers in a checkpoint skeleton."""

    index: int


def flatten(tree: Any, is_leaf: Callable[[Any], bool]) -> tuple[Any, list[Any]]:
    """``tree`` (dicts, lists, tuples) with every ``is_leaf`` value replaced by a ``Slot``; the values."""
    leaves: list[Any] = []

    def walk(x: Any) -> Any:
        if is_leaf(x):
            leaves.append(x)
            return Slot(len(leaves) - 1)
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, tuple):
            return tuple(walk(v) for v in x)
        return x

    return walk(tree), leaves


def fill(skeleton: Any, leaves: list[Any]) -> Any:
    """The inverse of ``flatten``."""
    if isinstance(skeleton, Slot):
        return leaves[skeleton.index]
    if isinstance(skeleton, dict):
        return {k: fill(v, leaves) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [fill(v, leaves) for v in skeleton]
    if isinstance(skeleton, tuple):
        return tuple(fill(v, leaves) for v in skeleton)
    return skeleton


@dataclass
class GenerationWorker:
    """A started child process and the parent's ends of its pipe and weights version counter."""

    process: Any  # multiprocessing.context.SpawnProcess
    conn: Connection
    ckpt_conn: Connection
    version: Any  # multiprocessing.sharedctypes.Synchronized[int]: version of the shared weights, -1 = none

    def stop(self, timeout: float = 10.0) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(("stop",))
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()
        self.ckpt_conn.close()


@dataclass(frozen=True)
class Spec:
    """Everything the child needs to build its model (sent once, after spawn)."""

    config: Any  # transformers PretrainedConfig
    dtype: Any  # torch.dtype
    device: str
    tokenizer: Any
    name: str
    threads: int
    trust_remote_code: bool


def launch(version: Any = None) -> GenerationWorker:
    """Spawn a generation child (it starts importing torch at once). ``version``: a counter to reuse (a
    restart keeps the parent's)."""
    ctx = mp.get_context("spawn")
    if version is None:
        version = ctx.Value("q", -1)
    parent, child = ctx.Pipe(duplex=True)
    ckpt_parent, ckpt_child = ctx.Pipe(duplex=True)
    proc = ctx.Process(
        target=child_main, args=(child, ckpt_child, version), name="swarmrl-generation", daemon=True
    )
    proc.start()
    child.close()
    ckpt_child.close()
    return GenerationWorker(proc, parent, ckpt_parent, version)


def wants_process(cfg: Any, device_type: str | None = None) -> bool:
    """Whether this node config generates in a child process. ``generation.worker: auto`` means a process
    on CPU and a thread on a GPU (kernels run outside the GIL there, and a second CUDA context and weight
    copy would cost GPU memory). ``device_type``: the policy's, once known; before that ``model.device``
    decides, and for ``auto`` the presence of an NVIDIA device node (no torch import needed)."""
    if cfg.trainer.max_staleness == 0 or cfg.generation.backend != "hf" or cfg.model.lora_rank:
        return False
    if cfg.generation.worker != "auto":
        return bool(cfg.generation.worker == "process")
    if device_type is None:
        device_type = cfg.model.device
        if device_type == "auto":
            device_type = "cuda" if Path("/dev/nvidiactl").exists() else "cpu"
    return device_type == "cpu"


def launch_for(cfg: Any) -> GenerationWorker | None:
    """A child for this node config when it (probably) generates in a separate process, else None; the
    node confirms with ``wants_process`` once its policy is loaded."""
    return launch() if wants_process(cfg) else None


def serve_checkpoints(conn: Connection) -> None:  # pragma: no cover - runs in the child
    """The child's checkpoint writer (a thread beside the generation loop)."""
    from swarmrl.trainer.checkpoint import save_checkpoint

    slots: list[Any] = []
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "slots":
            slots = msg[1]
            continue
        if msg[0] != "write":
            return
        _, root, round_, version, skeleton, keep = msg
        try:
            model_state, optimizer_state, extra = fill(skeleton, slots)
            path = save_checkpoint(Path(root), round_, version, model_state, optimizer_state, extra, keep)
            conn.send(("done", str(path)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))


def child_main(
    conn: Connection, ckpt_conn: Connection, version: Any
) -> None:  # pragma: no cover - runs in the child
    # Ctrl-C in a terminal and systemd's stop signal the whole process group: the node stops gracefully
    # (and needs this child for that: the last checkpoint), so the child leaves stopping to it. It ends
    # when the node says so or its pipe closes (the node is gone, even after kill -9).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import torch
    from transformers import AutoModelForCausalLM

    from swarmrl.trainer.generation import HFGenerator
    from swarmrl.trainer.policy import Policy

    threading.Thread(target=serve_checkpoints, args=(ckpt_conn,), name="checkpoints", daemon=True).start()
    try:
        msg = conn.recv()
    except (EOFError, OSError):
        return
    if msg[0] != "init":
        return
    spec: Spec = msg[1]
    shared: dict[str, torch.Tensor] = msg[2]
    try:
        torch.set_num_threads(spec.threads)
        model = AutoModelForCausalLM.from_config(spec.config, trust_remote_code=spec.trust_remote_code)
        device = torch.device(spec.device)
        model.to(device=device, dtype=spec.dtype).eval()
        gen = HFGenerator(Policy(model=model, tokenizer=spec.tokenizer, device=device, name=spec.name))
    except Exception as exc:
        conn.send(("error", f"cannot build the model: {type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    conn.send(("ready", None, None))
    mine = -1
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if msg[0] != "generate":
            return
        _, prompts, params, seed = msg
        try:
            with version.get_lock():
                if version.value != mine:
                    model.load_state_dict(shared)
                    mine = int(version.value)
            torch.manual_seed(seed)
            out = gen.generate(prompts, params)
            conn.send(("ok", out, mine))
        except Exception as exc:  # reported to the parent, which raises it there
            conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
