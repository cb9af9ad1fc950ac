"""Every question carries a TaskRef from which a task source regenerates the same question and answer."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from swarmrl.errors import TaskError
from swarmrl.tasks import TaskSampler, build_source, regenerate


@pytest.mark.parametrize(
    ("source", "dataset", "config"),
    [
        ("arithmetic", "add", {}),
        ("arithmetic", "mixed", {"terms": 3, "digits": 2}),
        ("multistep", "add", {}),
        (
            "reasoning_gym",
            "basic_arithmetic",
            {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        ),
        ("reasoning_gym", "chain_sum", {}),
    ],
)
def test_regenerate_from_taskref(source: str, dataset: str, config: dict) -> None:
    mine = build_source(source, dataset, config, seed=7, size=1000)
    theirs = build_source(source, dataset, dict(config), seed=7, size=1000)  # another node, same config
    for index in (0, 1, 17, 999):
        task = mine.get(index)
        assert task.ref.index == index and task.ref.source == source
        assert regenerate([theirs], task.ref) == (task.question, task.answer)
        assert task.score(task.answer) == 1.0


def test_different_seed_or_config_is_not_regenerable() -> None:
    a = build_source("arithmetic", "add", {}, seed=1, size=100)
    other_seed = build_source("arithmetic", "add", {}, seed=2, size=100)
    other_cfg = build_source("arithmetic", "add", {"digits": 2}, seed=1, size=100)
    ref = a.get(5).ref
    for src in (other_seed, other_cfg):
        with pytest.raises(TaskError):
            regenerate([src], ref)
    with pytest.raises(TaskError):
        regenerate([a], replace(ref, index=100))


def test_arithmetic_answers_are_correct() -> None:
    src = build_source("arithmetic", "mixed", {"terms": 3}, seed=3, size=500)
    for i in range(200):
        t = src.get(i)
        expr = t.question.rstrip("=")
        # left-to-right evaluation
        tokens, value, op = [], None, "+"
        num = ""
        for ch in expr + "+":
            if ch.isdigit():
                num += ch
            else:
                tokens.append((op, int(num)))
                num, op = "", ch
        value = 0
        for o, n in tokens:
            value = value + n if o == "+" else value - n if o == "-" else value * n
        assert t.answer == str(value)


def test_multistep_steps_are_partial_results() -> None:
    t = build_source("multistep", "add", {"terms": 4}, seed=0, size=10).get(3)
    nums = [int(x) for x in t.question.rstrip("=").split("+")]
    partial = [sum(nums[: i + 1]) for i in range(1, len(nums))]
    assert t.answer == ";".join(map(str, partial)) and list(t.steps) == [str(p) for p in partial]


def test_reasoning_gym_uses_dataset_scorer() -> None:
    src = build_source("reasoning_gym", "basic_arithmetic", {"min_terms": 2, "max_terms": 2}, seed=1, size=50)
    t = src.get(0)
    assert t.score(t.answer) == 1.0
    assert t.score("definitely wrong") < 1.0


def test_sampler_never_trains_on_eval_questions() -> None:
    src = build_source("arithmetic", "add", {}, seed=0, size=200)
    sampler = TaskSampler([src], [1.0], random.Random(0), eval_questions=50)
    assert all(t.ref.index >= 50 for t in sampler.sample(500))
    assert [t.ref.index for t in sampler.eval_set()] == list(range(50))


def test_unknown_source_and_dataset() -> None:
    with pytest.raises(TaskError, match="unknown task source"):
        build_source("nope", "x", {}, 0, 10)
    with pytest.raises(TaskError, match="unknown arithmetic dataset"):
        build_source("arithmetic", "division", {}, 0, 10)
    with pytest.raises(TaskError, match="reasoning-gym cannot build"):
        build_source("reasoning_gym", "no_such_dataset", {}, 0, 10)
