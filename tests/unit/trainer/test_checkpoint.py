"""Checkpoints are atomic; a truncated or corrupt newest checkpoint falls back to the previous one."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from swarmrl.trainer.checkpoint import list_checkpoints, load_latest, save_checkpoint


def _save(root: Path, round_: int, keep: int = 5) -> Path:
    model = {"w": torch.full((4,), float(round_))}
    opt = {"state": {}, "param_groups": [{"lr": 0.1 * round_}]}
    return save_checkpoint(
        root, round_, round_ * 2, model, opt, {"task_rng": random.Random(round_).getstate()}, keep
    )


def test_save_and_load_latest(tmp_path: Path) -> None:
    for r in (1, 2, 3):
        _save(tmp_path, r)
    ck = load_latest(tmp_path)
    assert ck is not None
    assert (ck.round, ck.policy_version) == (3, 6)
    assert ck.model_state["w"].tolist() == [3.0] * 4
    assert ck.optimizer_state["param_groups"][0]["lr"] == 0.30000000000000004
    assert ck.state["task_rng"] == random.Random(3).getstate()


def test_keep_prunes_oldest(tmp_path: Path) -> None:
    for r in range(1, 6):
        _save(tmp_path, r, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["ckpt-00000005", "ckpt-00000004"]


def test_truncated_newest_falls_back(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    model = newest / "model.pt"
    model.write_bytes(model.read_bytes()[:10])
    ck = load_latest(tmp_path)
    assert ck is not None and ck.round == 1


def test_corrupt_newest_falls_back(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    data = bytearray((newest / "optimizer.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (newest / "optimizer.pt").write_bytes(bytes(data))
    ck = load_latest(tmp_path)
    assert ck is not None and ck.round == 1


def test_missing_manifest_and_leftover_temp_dirs_are_ignored(tmp_path: Path) -> None:
    _save(tmp_path, 1)
    (tmp_path / ".tmp-ckpt-00000009-123").mkdir()  # a crash mid-write leaves only a temp dir
    (tmp_path / "ckpt-00000003").mkdir()  # a directory without a manifest
    ck = load_latest(tmp_path)
    assert ck is not None and ck.round == 1


def test_no_checkpoint(tmp_path: Path) -> None:
    assert load_latest(tmp_path / "none") is None
