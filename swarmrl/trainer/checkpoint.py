"""Atomic checkpoints: write everything into a temp directory, fsync, then rename into place.

A checkpoint directory ``ckpt-<round>`` holds ``model.pt`` (policy state dict), ``optimizer.pt``,
``state.pt`` (round, policy version, RNG states, node state) and ``manifest.json`` (size and SHA-256 of each
file). Loading verifies the manifest; a truncated or corrupt checkpoint is skipped for the previous one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from swarmrl.errors import CheckpointError

log = logging.getLogger(__name__)
PREFIX = "ckpt-"
FILES = ("model.pt", "optimizer.pt", "state.pt")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpoint:
    path: Path
    round: int
    policy_version: int
    state: dict[str, Any]
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any]


def save_checkpoint(
    root: Path,
    round_: int,
    policy_version: int,
    model_state: dict[str, Any],
    optimizer_state: dict[str, Any],
    extra: dict[str, Any],
    keep: int = 3,
) -> Path:
    """Write ``ckpt-<round>`` atomically and keep the newest ``keep`` checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{round_:08d}"
    tmp = root / f".tmp-{PREFIX}{round_:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    state = {"round": round_, "policy_version": policy_version, "rng": rng_state(), **extra}
    torch.save(model_state, tmp / "model.pt")
    torch.save(optimizer_state, tmp / "optimizer.pt")
    torch.save(state, tmp / "state.pt")
    manifest = {
        "round": round_,
        "policy_version": policy_version,
        "files": {n: {"size": (tmp / n).stat().st_size, "sha256": _sha256(tmp / n)} for n in FILES},
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
    for name in (*FILES, "manifest.json"):
        with open(tmp / name, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in list_checkpoints(root)[keep:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint directories, newest round first (temp directories are ignored)."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def verify(path: Path) -> dict[str, Any]:
    """The manifest of a complete, uncorrupted checkpoint; CheckpointError otherwise."""
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name}: unreadable manifest ({exc})") from exc
    for name, meta in manifest.get("files", {}).items():
        f = path / name
        if not f.is_file() or f.stat().st_size != meta["size"]:
            raise CheckpointError(f"{path.name}: {name} is missing or truncated")
        if _sha256(f) != meta["sha256"]:
            raise CheckpointError(f"{path.name}: {name} is corrupt (checksum mismatch)")
    if set(manifest.get("files", {})) != set(FILES):
        raise CheckpointError(f"{path.name}: manifest lists {sorted(manifest.get('files', {}))}")
    return dict(manifest)


def load_latest(root: Path, map_location: str | torch.device = "cpu") -> Checkpoint | None:
    """The newest checkpoint that verifies; corrupt ones are logged and skipped."""
    for path in list_checkpoints(root):
        try:
            verify(path)
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
            model_state = torch.load(path / "model.pt", map_location=map_location, weights_only=True)
            optimizer_state = torch.load(path / "optimizer.pt", map_location=map_location, weights_only=False)
        except (CheckpointError, OSError, RuntimeError, EOFError) as exc:
            log.warning("skipping checkpoint %s: %s", path.name, exc)
            continue
        return Checkpoint(
            path, int(state["round"]), int(state["policy_version"]), state, model_state, optimizer_state
        )
    return None


@dataclass
class ModelCheckpoint:
    """The policy weights of one verified checkpoint (no optimizer state: export and evaluation)."""

    path: Path
    round: int
    policy_version: int
    model_state: dict[str, Any]


def load_model_state(root: Path, round_: int | None = None) -> ModelCheckpoint:
    """The weights of checkpoint ``round_`` (default: the newest that verifies); CheckpointError when none."""
    if round_ is not None:
        candidates = [root / f"{PREFIX}{round_:08d}"]
        if not candidates[0].is_dir():
            have = ", ".join(str(int(p.name[len(PREFIX) :])) for p in list_checkpoints(root)) or "none"
            raise CheckpointError(f"no checkpoint of round {round_} in '{root}' (rounds kept: {have})")
    else:
        candidates = list_checkpoints(root)
        if not candidates:
            raise CheckpointError(f"no checkpoint in '{root}'; run the node for at least one round first")
    errors = []
    for path in candidates:
        try:
            manifest = verify(path)
            model_state = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
        except (CheckpointError, OSError, RuntimeError, EOFError) as exc:
            log.warning("skipping checkpoint %s: %s", path.name, exc)
            errors.append(str(exc))
            continue
        return ModelCheckpoint(path, int(manifest["round"]), int(manifest["policy_version"]), model_state)
    raise CheckpointError(f"no valid checkpoint in '{root}': {'; '.join(errors)}")
