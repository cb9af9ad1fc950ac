"""Plugins: an installed package's ``swarmrl.rewards`` entry points, and TRL-style callables."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from swarmrl.errors import RewardError
from swarmrl.rewards.base import Sample
from swarmrl.rewards.pipeline import build_pipeline
from swarmrl.rewards.registry import Registry, default_registry

PIP = [sys.executable, "-m", "pip"]


def _write_plugin(root: Path, dist: str, module: str) -> None:
    (root / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=68"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "0.0.1"

            [project.entry-points."swarmrl.rewards"]
            shouty = "{module}:Shouty"
            plug_len = "{module}:length_reward"

            [tool.setuptools]
            py-modules = ["{module}"]
            """
        )
    )
    (root / f"{module}.py").write_text(
        textwrap.dedent(
            """
            from swarmrl.rewards.base import RewardOutput


            class Shouty:
                name = "shouty"

                def score_group(self, group):
                    return [RewardOutput(1.0 if s.completion.isupper() else 0.0) for s in group]


            def length_reward(prompts, completions, scale=1.0, **columns):
                return [scale * len(c) for c in completions]
            """
        )
    )


def test_installed_plugin_is_selectable_by_name(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    dist, module = f"swarmrl-test-reward-plugin-{tag}", f"swarmrl_test_reward_plugin_{tag}"
    _write_plugin(tmp_path, dist, module)
    install = subprocess.run(
        [*PIP, "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert install.returncode == 0, install.stderr
    try:
        probe = textwrap.dedent(
            """
            import json
            from swarmrl.rewards.base import Sample
            from swarmrl.rewards.pipeline import build_pipeline

            pipe = build_pipeline([("shouty", 1.0, {}), ("plug_len", 0.5, {"scale": 2.0})])
            scored = pipe.score_group([Sample("q", "ABC", "x"), Sample("q", "ab", "x")])
            print(json.dumps({"rewards": scored.rewards, "modules": scored.modules}))
            """
        )
        run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        got = json.loads(run.stdout.strip().splitlines()[-1])
        assert got["modules"] == {"shouty": [1.0, 0.0], "plug_len": [6.0, 4.0]}
        assert got["rewards"] == [4.0, 2.0]
    finally:
        subprocess.run([*PIP, "uninstall", "-y", "-q", dist], capture_output=True, timeout=120)
    after = subprocess.run(
        [
            sys.executable,
            "-c",
            "from swarmrl.rewards.registry import available; print('shouty' in available())",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert after.stdout.strip() == "False"


def trl_style(prompts: Sequence[str], completions: Sequence[str], **columns: Any) -> list[float | None]:
    """A TRL reward function: uses a dataset column and returns None for 'not applicable'."""
    out: list[float | None] = []
    for c, sol, difficulty in zip(completions, columns["solution"], columns["difficulty"], strict=True):
        out.append(None if difficulty is None else float(c.strip() == sol) * difficulty)
    return out


def test_trl_style_callable_is_accepted_unchanged() -> None:
    reg = default_registry(load_plugins=False)
    reg.register("trl_acc", trl_style)
    group = [
        Sample("q", "4", "4", extras={"difficulty": 2.0}),
        Sample("q", "5", "4", extras={"difficulty": 2.0}),
        Sample("q", "4", "4", extras={"difficulty": None}),
    ]
    pipe = build_pipeline([("trl_acc", 1.0, {}), ("exact_match", 0.5, {})], registry=reg)
    scored = pipe.score_group(group)
    assert scored.modules["trl_acc"] == [2.0, 0.0, None]
    assert scored.rewards == [2.5, 0.0, 0.5]  # None is skipped, not counted as 0


def test_callable_returning_wrong_length_is_an_error() -> None:
    reg = Registry()
    reg.register("bad", lambda prompts, completions, **kw: [1.0])
    with pytest.raises(RewardError, match="returned 1 values"):
        build_pipeline([("bad", 1.0, {})], registry=reg).score_group(
            [Sample("q", "a", "a"), Sample("q", "b", "a")]
        )


def test_composite_specs_can_name_callables_in_the_same_registry() -> None:
    reg = default_registry(load_plugins=False)
    reg.register("trl_acc", trl_style)
    group = [
        Sample("q", "4", "4", extras={"difficulty": 1.0}),
        Sample("q", "5", "4", extras={"difficulty": 1.0}),
    ]
    pipe = build_pipeline([("ensemble", 1.0, {"members": ["trl_acc", "exact_match"]})], registry=reg)
    assert pipe.score_group(group).rewards == [1.0, 0.0]
