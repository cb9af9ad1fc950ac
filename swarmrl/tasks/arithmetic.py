"""Built-in arithmetic tasks: short questions like ``3+4=`` that a 1-10M-parameter model can learn.

Datasets (presets, overridable by config keys ``terms``, ``digits``, ``ops``):
``add`` (a+b), ``sub`` (a-b), ``mul`` (a*b), ``mixed`` (any of + - *). Answers are integers as text.
The ``multistep`` source chains operations and exposes every partial result as a checkable step.
"""

from __future__ import annotations

from typing import Any

from swarmrl.errors import TaskError
from swarmrl.tasks.base import Task, TaskSource, item_rng

PRESETS: dict[str, dict[str, Any]] = {
    "add": {"terms": 2, "digits": 1, "ops": "+"},
    "sub": {"terms": 2, "digits": 1, "ops": "-"},
    "mul": {"terms": 2, "digits": 1, "ops": "*"},
    "mixed": {"terms": 2, "digits": 1, "ops": "+-*"},
}


def _params(dataset: str, config: dict[str, Any], default_terms: int) -> tuple[int, int, str]:
    if dataset not in PRESETS and not {"ops"} <= set(config):
        raise TaskError(
            f"unknown arithmetic dataset '{dataset}'; use one of {sorted(PRESETS)} or give config.ops"
        )
    merged = {**PRESETS.get(dataset, {"terms": default_terms, "digits": 1}), **config}
    unknown = set(merged) - {"terms", "digits", "ops"}
    if unknown:
        raise TaskError(f"unknown arithmetic config keys {sorted(unknown)}; allowed: terms, digits, ops")
    terms, digits, ops = int(merged["terms"]), int(merged["digits"]), str(merged["ops"])
    if not 2 <= terms <= 8 or not 1 <= digits <= 6 or not ops or set(ops) - set("+-*"):
        raise TaskError("arithmetic config needs 2<=terms<=8, 1<=digits<=6 and ops from '+-*'")
    return terms, digits, ops


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


class ArithmeticSource(TaskSource):
    """Left-to-right evaluation with no precedence surprises: terms are combined pairwise in order."""

    source = "arithmetic"

    def __init__(self, dataset: str, config: dict[str, Any], seed: int, size: int) -> None:
        super().__init__(dataset, config, seed, size)
        self.terms, self.digits, self.ops = _params(dataset, config, 2)

    def _draw(self, index: int) -> tuple[list[int], list[str]]:
        rng = item_rng(self.source, self.dataset, self.digest, self.seed, index)
        hi = 10**self.digits - 1
        nums = [rng.randint(0, hi) for _ in range(self.terms)]
        ops = [rng.choice(self.ops) for _ in range(self.terms - 1)]
        return nums, ops

    def get(self, index: int) -> Task:
        index %= self.size
        nums, ops = self._draw(index)
        value = nums[0]
        partials = []
        for op, n in zip(ops, nums[1:], strict=True):
            value = _apply(value, op, n)
            partials.append(str(value))
        text = str(nums[0]) + "".join(f"{op}{n}" for op, n in zip(ops, nums[1:], strict=True))
        family = ops[0] if len(set(ops)) == 1 else "mixed"
        return Task(
            f"{text}=",
            str(value),
            self.ref(index),
            family={"+": "add", "-": "sub", "*": "mul"}.get(family, family),
            steps=tuple(partials),
        )


class MultiStepSource(ArithmeticSource):
    """Chained arithmetic whose solution writes each partial result: ``1+2+3=`` -> ``3;6``.

    The answer is the full chain of partial results separated by ``;`` (the last one is the final value),
    so process rewards can check every step. Default: 3 terms, 1 digit, ``+``.
    """

    source = "multistep"

    def __init__(self, dataset: str, config: dict[str, Any], seed: int, size: int) -> None:
        TaskSource.__init__(self, dataset, config, seed, size)
        merged = (
            {"terms": 3, **config} if dataset not in PRESETS else {**PRESETS[dataset], "terms": 3, **config}
        )
        if "ops" not in merged:
            merged["ops"] = "+"
        self.terms, self.digits, self.ops = _params("custom", merged, 3)

    def get(self, index: int) -> Task:
        base = super().get(index)
        return Task(
            base.question,
            ";".join(base.steps),
            self.ref(index % self.size),
            family=base.family,
            steps=base.steps,
        )
