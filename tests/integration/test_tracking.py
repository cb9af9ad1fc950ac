"""``--report-to``: a real node run writes TensorBoard event files (read back with TensorBoard's own event
reader) and an offline W&B run directory; a tracker whose package is missing is a config error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from swarmrl.errors import ConfigError
from swarmrl.node.tracking import check_trackers, wandb_mode
from tests.nodeutil import REPO, SWARM_NODE, node_env, write_config

ROUNDS = 4
EXPECTED_SCALARS = {
    "reward/mean",
    "reward/module/exact_match",
    "accuracy/train",
    "accuracy/eval",
    "train/loss",
    "train/kl",
    "train/entropy",
    "train/clip_fraction",
    "swarm/external_share",
    "time/round_seconds",
    "time/generation_seconds",
    "time/train_seconds",
}


def test_report_to_tensorboard_and_wandb_offline(tmp_path: Path) -> None:
    import subprocess

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = tmp_path / "data"
    config = write_config(
        tmp_path / "node.yaml",
        data,
        {"node": {"rounds": ROUNDS, "eval_every": 2, "metrics_port": -1, "tracking": {"text_every": 2}}},
    )
    env = {k: v for k, v in node_env().items() if not k.startswith("WANDB_")}
    env["HOME"] = str(tmp_path)  # no netrc login: W&B must run offline
    done = subprocess.run(
        [*SWARM_NODE, "run", "--config", str(config), "--report-to", "tensorboard,wandb"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wandb:" not in done.stdout + done.stderr  # W&B's banner and console capture are off
    # stderr is a pipe: plain round lines with rate and ETA, then the summary, then the last line
    rounds = [line for line in done.stderr.splitlines() if "swarmrl.progress: round " in line]
    assert len(rounds) == ROUNDS and all(re.search(r" \| (\d+\.\d\d|-) r/s \| eta ", x) for x in rounds), (
        rounds
    )
    assert f"swarmrl.progress: run summary: rounds 1-{ROUNDS} ({ROUNDS} in this run)" in done.stderr
    assert done.stderr.rstrip().splitlines()[-1].endswith(f"stopped at round {ROUNDS}, policy version 0")

    acc = EventAccumulator(str(data / "runs" / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    tags = acc.Tags()
    assert set(tags["scalars"]) >= EXPECTED_SCALARS, sorted(tags["scalars"])
    assert [e.step for e in acc.Scalars("reward/mean")] == list(range(1, ROUNDS + 1))
    assert [e.step for e in acc.Scalars("accuracy/eval")] == [2, 4]
    assert all(e.value >= 0 for e in acc.Scalars("train/entropy"))
    texts = acc.Tensors("completions/text_summary")
    assert [t.step for t in texts] == [2, 4]
    table = texts[0].tensor_proto.string_val[0].decode()
    assert "| question | answer | completion | reward |" in table

    runs = list((data / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((data / "runs" / "wandb").iterdir())
    assert len(list(runs[0].glob("run-*.wandb"))) == 1
    tables = sorted(runs[0].glob("files/media/table/completions_*.table.json"))
    assert len(tables) == 2
    assert json.loads(tables[0].read_text())["columns"] == ["question", "answer", "completion", "reward"]


def test_missing_tracker_package_is_a_config_error_naming_the_field_and_extra() -> None:
    with pytest.raises(ConfigError) as info:
        check_trackers(["tensorboard", "wandb"], {"tensorboard": "tensorboard", "wandb": "no_such_pkg_xyz"})
    text = str(info.value)
    assert "node.report_to[1]" in text and "pip install 'swarmrl[track]'" in text


def test_wandb_mode_is_offline_without_login(tmp_path: Path) -> None:
    assert wandb_mode("auto", {"NETRC": str(tmp_path / "none")}) == "offline"
    assert wandb_mode("auto", {"WANDB_API_KEY": "k"}) == "online"
    assert wandb_mode("online", {"WANDB_MODE": "offline"}) == "offline"
    (tmp_path / "netrc").write_text("machine api.wandb.ai login user password secret\n")
    (tmp_path / "netrc").chmod(0o600)
    assert wandb_mode("auto", {"NETRC": str(tmp_path / "netrc")}) == "online"
    assert wandb_mode("offline", {"WANDB_API_KEY": "k"}) == "offline"
