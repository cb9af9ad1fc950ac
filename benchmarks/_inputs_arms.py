"""The arms of ``rewards_runs.py --suite inputs`` (issue 15): modules whose inputs only a running node can
provide -- VeRPO on the code task (the sandbox's per-test pass matrix) and PAR / LSC on a local reward model
(its scores and its score of the gold answer as the reference reward) -- beside the exact-match baseline of
the same task. ``@RM@`` is replaced by the path of the reward model the suite trains first (:func:`fit_rm`).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

# BASE is re-exported: the same node, model and swarm settings as the literature suite
from _literature_arms import BASE as BASE
from _literature_arms import TASKS as _LITERATURE_TASKS

TASKS: dict[str, dict[str, Any]] = {
    "add": _LITERATURE_TASKS["add"],
    # the shipped code dataset: `add3(x)=` -> `x+3`, six unit tests per function
    "code": {
        "tasks": {"sources": [{"source": "code", "dataset": "tiny"}], "eval_questions": 16},
        "generation": {"max_new_tokens": 10},
        "model": {"tiny": {"warmstart_steps": 30}},  # greedy accuracy ~0.17 after it
    },
}

EM = {"name": "exact_match", "weight": 1.0}
RM_SCORE = {"name": "column", "params": {"key": "score"}}
RM = [{"name": "rm", "path": "@RM@", "key": "score", "ref_key": "ref_rewards", "references": "answer"}]


def _mods(*mods: dict[str, Any], report: tuple[str, ...] = ("exact_match",), **extra: Any) -> dict[str, Any]:
    return {"rewards": {"modules": list(mods), "report": list(report), **extra}}


ARMS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("baseline", "code", "exact_match", _mods(EM, report=("exact_match", "dataset_score"))),
    (
        "1c VeRPO",
        "code",
        "verpo (sandboxed unit tests)",
        _mods({"name": "verpo", "weight": 1.0}, report=("exact_match", "dataset_score")),
    ),
    ("baseline", "add", "exact_match", _mods(EM, report=("exact_match", "column"), reward_models=RM)),
    (
        "1b PAR",
        "add",
        "par over a local RM (ref: RM score of the gold answer)",
        _mods(
            {"name": "par", "weight": 1.0, "params": {"of": RM_SCORE}},
            report=("exact_match", "column"),
            reward_models=RM,
        ),
    ),
    (
        "1b LSC",
        "add",
        "lsc over a local RM (ref: RM score of the gold answer)",
        _mods(
            {"name": "lsc", "weight": 1.0, "params": {"properties": [RM_SCORE], "reference": "mean"}},
            report=("exact_match", "column"),
            reward_models=RM,
        ),
    ),
]


def fit_rm(out: Path, seed: int = 0) -> Path:
    """A small reward model for one-digit addition, trained on right and wrong answers (near misses,
    other numbers, junk) and saved to ``out`` (kept between runs)."""
    if (out / "config.json").is_file():
        return out
    from swarmrl.trainer.reward_model import fit_reward_model

    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(6000):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        right = str(a + b)
        kind = rng.random()
        if kind < 0.5:
            answer, label = right, 1.0
        elif kind < 0.8:
            answer, label = str(a + b + rng.choice([-3, -2, -1, 1, 2, 3])), 0.0
        elif kind < 0.95:
            answer, label = str(rng.randint(0, 99)), 0.0
        else:
            answer, label = rng.choice(["", "+", "=", "a", right + right]), 0.0
        if answer == right:
            label = 1.0
        texts.append(f"{a}+{b}={answer}")
        labels.append(label)
    fit_reward_model(out, texts, labels, steps=4000, batch=64, lr=2e-3, hidden_size=64, layers=2, seed=seed)
    return out


def rm_rank_accuracy(rm: Path, n: int = 200, seed: int = 1) -> float:
    """Share of held-out questions where the RM scores the right sum above two near misses."""
    from swarmrl.config.scorers import RewardModelSpec
    from swarmrl.trainer.reward_model import RewardModel

    model = RewardModel(RewardModelSpec(name="rm", path=str(rm), device="cpu"))
    rng = random.Random(seed)
    hits = 0
    for _ in range(n):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        s = model.score([f"{a}+{b}="] * 3, [str(a + b), str(a + b + 1), str(a + b - 2)])
        hits += s[0] > max(s[1:])
    return hits / n


def resolve(value: Any, rm: Path) -> Any:
    """``value`` with every ``@RM@`` replaced by ``rm``."""
    if isinstance(value, dict):
        return {k: resolve(v, rm) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, rm) for v in value]
    return str(rm) if value == "@RM@" else value
