"""The arms of ``rewards_runs.py --suite literature`` (issue 17): each new module, combine mode or scheduler on
a task where it is meant to help, beside the exact-match baseline of the same task (same seeds).

An arm is (item, task, label, config overrides); the config is the base below merged with the task and the
overrides, written to YAML in the run directory and run through the CLI like every other config.
"""

from __future__ import annotations

from typing import Any

BASE: dict[str, Any] = {
    "node": {"rounds": 100, "checkpoint_every": 20, "eval_every": 20, "metrics_port": 0, "progress": "plain"},
    "model": {"name": "tiny-default", "device": "cpu"},
    "swarm": {"transport": "none"},
}

TASKS: dict[str, dict[str, Any]] = {
    "add": {"tasks": {"sources": [{"source": "arithmetic", "dataset": "add"}]}},
    # the multi-step chain of the G-RA / PURE runs: `0+1+7=` -> `1;8`, 300 warm-start steps
    "multistep": {
        "tasks": {"sources": [{"source": "multistep", "dataset": "add"}]},
        "model": {"tiny": {"warmstart_steps": 300}},
        "rewards": {"segment": {"rule": "regex", "pattern": ";"}},
    },
    # four families as four arms of the task scheduler
    "families": {
        "tasks": {
            "sources": [{"dataset": d} for d in ("add", "sub", "mul", "mixed")],
        }
    },
}

EM = {"name": "exact_match", "weight": 1.0}


def _mods(*mods: dict[str, Any], report: tuple[str, ...] = ("exact_match",)) -> dict[str, Any]:
    return {"rewards": {"modules": list(mods), "report": list(report)}}


ARMS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("baseline", "add", "exact_match", _mods(EM)),
    ("baseline", "multistep", "exact_match", _mods(EM)),
    ("baseline", "families", "exact_match, schedule fixed", _mods(EM)),
    ("1 scheduler", "families", "schedule recovering", {**_mods(EM), "tasks": {"schedule": "recovering"}}),
    ("1 scheduler", "families", "schedule ucb", {**_mods(EM), "tasks": {"schedule": "ucb"}}),
    ("2 P2S", "multistep", "exact_match + p2s", _mods(EM, {"name": "p2s", "weight": 1.0})),
    (
        "3 exploration",
        "add",
        "explore_bonus (product, zero_variance gate)",
        _mods({"name": "explore_bonus", "weight": 1.0, "params": {"beta": 0.1}}),
    ),
    # GRPO's per-group z-score makes beta irrelevant inside an all-wrong group (the bonus becomes the whole,
    # unit-variance signal there); Dr. GRPO (mean-centred, no std) keeps beta's scale against correctness
    ("baseline", "add", "exact_match, advantage dr_grpo", {**_mods(EM), "trainer": {"advantage": "dr_grpo"}}),
    (
        "3 exploration",
        "add",
        "explore_bonus, advantage dr_grpo",
        {
            **_mods({"name": "explore_bonus", "weight": 1.0, "params": {"beta": 0.1}}),
            "trainer": {"advantage": "dr_grpo"},
        },
    ),
    ("4 OPRL", "multistep", "exact_match + oprl", _mods(EM, {"name": "oprl", "weight": 1.0})),
    (
        "5 ArenaRL",
        "add",
        "arena (numeric judge, seeded single elimination)",
        _mods({"name": "arena", "weight": 1.0, "params": {"judge": "numeric"}}),
    ),
    (
        "6 HERON",
        "add",
        "heron [exact_match > format > length]",
        {
            "rewards": {
                "modules": [
                    EM,
                    {"name": "format", "weight": 1.0},
                    {
                        "name": "linear_overlong",
                        "weight": 1.0,
                        "params": {"limit": 2, "coef": 0.5, "unit": "chars"},
                    },
                ],
                "report": ["exact_match"],
                "combine": {"mode": "heron", "margins": {"linear_overlong": 0.25}},
            }
        },
    ),
    (
        "6 HERON",
        "add",
        "weighted sum of the same three (control)",
        _mods(
            EM,
            {"name": "format", "weight": 1.0},
            {"name": "linear_overlong", "weight": 1.0, "params": {"limit": 2, "coef": 0.5, "unit": "chars"}},
        ),
    ),
    ("7 SLATE", "multistep", "exact_match + slate", _mods(EM, {"name": "slate", "weight": 1.0})),
    ("8 TVM", "add", "exact_match + tvm (token baseline)", _mods(EM, {"name": "tvm", "weight": 1.0})),
    (
        "9 potential shaping",
        "multistep",
        "exact_match + potential_shaping(step_match)",
        _mods(EM, {"name": "potential_shaping", "weight": 1.0, "params": {"of": "step_match"}}),
    ),
    (
        "9 potential shaping",
        "multistep",
        "exact_match + step_match raw (control)",
        _mods(EM, {"name": "step_match", "weight": 1.0}),
    ),
]
