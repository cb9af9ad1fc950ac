"""The user's own data and task plugins in real node processes.

- Two libp2p nodes train on the same JSONL file (copies at different paths) and accept each other's groups;
  a third node holding an edited copy rejects them all as ``unverifiable_dataset`` (and is not banned for it).
- A task source installed through the ``swarmrl.tasks`` entry point is what a node trains on.
- bfloat16 weights with gradient checkpointing train a few rounds on CPU; the truncated-completion share is
  journaled.

Every wait is on a condition (control API, metrics, files) with a timeout.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

from swarmrl.node.journal import read_journal
from swarmrl.tasks.word_problems import write_jsonl
from tests.integration.swarm_procs import cluster, libp2p_addr
from tests.nodeutil import run_cli, wait_for, write_config

PIP = [sys.executable, "-m", "pip"]


def _dataset_tasks(path: Path) -> dict[str, object]:
    return {
        "sources": [
            {
                "source": "dataset",
                "dataset": "word_problems",
                "config": {"path": str(path), "answer_field": "solution", "extract": "gsm8k"},
            }
        ],
        "eval_questions": 8,
    }


def test_same_file_verifies_and_an_edited_copy_is_unverifiable(tmp_path: Path) -> None:
    original = write_jsonl(tmp_path / "a" / "wp.jsonl", rows=60)
    copy = tmp_path / "b" / "copy-of-wp.jsonl"
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    lines = original.read_text().splitlines(keepends=True)
    row = json.loads(lines[30])
    row["solution"] = row["solution"] + "0"  # one answer changed: another version of the file
    lines[30] = json.dumps(row, sort_keys=True) + "\n"
    edited = tmp_path / "c" / "wp.jsonl"
    edited.parent.mkdir()
    edited.write_text("".join(lines))

    def extra(path: Path, bootstrap: list[str]) -> dict[str, object]:
        return {"tasks": _dataset_tasks(path), "swarm": {"transport": "libp2p", "bootstrap_peers": bootstrap}}

    with cluster(tmp_path / "nodes") as c:
        a = c.start("a", extra(original, []))
        a.wait_up(900)
        b = c.start("b", extra(copy, [libp2p_addr(a)]))
        third = c.start("c", extra(edited, [libp2p_addr(a)]))
        b.wait_up(900)
        third.wait_up(900)

        def traded() -> bool:
            return a.accepted_from(b) > 0 and b.accepted_from(a) > 0

        wait_for(traded, 600, "a and b to accept each other's groups", 0.5)

        def third_refused_both() -> bool:
            reason = '{reason="unverifiable_dataset"}'
            return third.metric("swarmrl_rollouts_rejected_total", reason) >= 4

        wait_for(third_refused_both, 600, "the node with the edited file to refuse groups", 0.5)
        assert third.accepted_from(a) == 0 and third.accepted_from(b) == 0
        # Nothing else went wrong: no group was a mismatch, and the honest peers are not banned.
        assert third.metric("swarmrl_rollouts_rejected_total", '{reason="task_mismatch"}') == 0
        scores = {p.peer_id: p.score for p in third.control.peers().peers}
        assert scores.get(a.peer_id, 0.0) == 0.0 and scores.get(b.peer_id, 0.0) == 0.0, scores
        assert 0.0 <= a.metric("swarmrl_truncated_fraction") <= 1.0
        for proc in (a, b, third):
            assert not proc.bad_log_lines(), proc.tail()
    # a trained on rows of the file only, never on its held-out rows 0-7
    log = read_journal(tmp_path / "nodes" / "a" / "rollouts.log")
    indices = {g["task"][4] for rec in log for g in rec["groups"] if g["origin"] == "local"}
    assert indices and min(indices) >= 8
    assert {g["task"][0] for rec in log for g in rec["groups"]} == {"dataset"}


PLUGIN = '''
from swarmrl.tasks.base import Task, TaskSource, item_rng


class Reverse(TaskSource):
    """Spell a short word backwards: 'abc' -> 'cba'."""

    source = "reverse_words"

    def get(self, index):
        index %= self.size
        rng = item_rng(self.source, self.seed, index)
        word = "".join(rng.choice("abcdef") for _ in range(3))
        return Task(f"rev {word}=", word[::-1], self.ref(index), family="reverse")
'''


def test_task_plugin_from_an_entry_point_is_used_by_a_node(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    dist, module = f"swarmrl-test-task-plugin-{tag}", f"swarmrl_test_task_plugin_{tag}"
    pkg = tmp_path / "plugin"
    pkg.mkdir()
    (pkg / f"{module}.py").write_text(PLUGIN)
    (pkg / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "0.0.1"

            [project.entry-points."swarmrl.tasks"]
            reverse_words = "{module}:Reverse"

            [tool.setuptools]
            py-modules = ["{module}"]
            """
        )
    )
    install = subprocess.run(
        [*PIP, "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(pkg)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert install.returncode == 0, install.stderr
    try:
        data = tmp_path / "node"
        config = write_config(
            tmp_path / "node.yaml",
            data,
            {
                "node": {"rounds": 2, "metrics_port": -1, "control_port": -1},
                "tasks": {"sources": [{"source": "reverse_words", "dataset": "three"}]},
            },
        )
        assert run_cli("config", "check", str(config)).returncode == 0
        res = run_cli("run", "--config", str(config), timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
    finally:
        subprocess.run([*PIP, "uninstall", "-y", "-q", dist], capture_output=True, timeout=120)
    groups = [g for rec in read_journal(data / "rollouts.log") for g in rec["groups"]]
    assert groups and all(g["task"][0] == "reverse_words" for g in groups)
    assert all(g["question"].startswith("rev ") and g["answer"] == g["question"][4:7][::-1] for g in groups)
    gone = run_cli("config", "check", str(config))
    assert gone.returncode == 2 and "'tasks.sources[0].source'" in gone.stderr


def test_bfloat16_with_gradient_checkpointing_trains_on_cpu(tmp_path: Path) -> None:
    data = tmp_path / "node"
    config = write_config(
        tmp_path / "node.yaml",
        data,
        {
            "node": {"rounds": 3, "metrics_port": -1, "control_port": -1},
            "model": {"device": "cpu", "dtype": "bfloat16", "gradient_checkpointing": True},
            # A length term makes rewards differ inside a group, so every round has something to train on.
            "rewards": {
                "modules": [
                    {"name": "exact_match"},
                    {"name": "linear_overlong", "params": {"limit": 0, "coef": 0.1, "unit": "chars"}},
                ]
            },
            "generation": {"num_completions": 8},
            "sampling": {"local_groups": 4},
            "trainer": {"lr_schedule": "cosine", "warmup_steps": 1},
        },
    )
    res = run_cli("run", "--config", str(config), timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    records = [r for r in read_journal(data / "journal.log") if r.get("kind") == "round"]
    assert [r["round"] for r in records] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) for r in records)
    assert all(0.0 <= r["truncated_fraction"] <= 1.0 for r in records)
    assert sum(r["optimizer_steps"] for r in records) > 0
    # cosine over 3 rounds x 2 steps with 1 warm-up step: every round's last rate is below lr
    assert all(0.0 <= r["lr"] <= 3e-4 for r in records)
    ckpts = sorted((data / "checkpoints").glob("ckpt-*"))
    assert ckpts, "no checkpoint written"
    import torch

    state = torch.load(ckpts[-1] / "model.pt", map_location="cpu", weights_only=True)
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.bfloat16}
