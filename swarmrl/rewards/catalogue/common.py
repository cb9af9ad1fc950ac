"""Helpers shared by catalogue modules: sub-module specs, steps, columns, registration."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from swarmrl.errors import RewardError
from swarmrl.rewards.base import RewardModule, RewardOutput, Sample, trajectory_value
from swarmrl.rewards.scorer import PolicyScorer
from swarmrl.rewards.segment import Segmenter

if TYPE_CHECKING:
    from swarmrl.rewards.registry import Registry

Spec = str | dict[str, Any]
"""A sub-module: a registered name, or ``{"name": ..., "params": {...}}``."""


def build_sub(registry: Registry, spec: Spec, role: str) -> RewardModule:
    if isinstance(spec, str):
        return registry.create(spec, {})
    if isinstance(spec, dict) and isinstance(spec.get("name"), str):
        extra = set(spec) - {"name", "params"}
        if extra:
            raise RewardError(f"{role}: a module spec has only 'name' and 'params', not {sorted(extra)}")
        return registry.create(spec["name"], dict(spec.get("params") or {}))
    raise RewardError(f"{role}: expected a module name or {{name, params}}, got {spec!r}")


class Composite:
    """Base for modules built from other modules; forwards a bound policy scorer to its children."""

    name = "composite"

    def children(self) -> Iterator[RewardModule]:
        return iter(())

    def bind_scorer(self, scorer: PolicyScorer | None) -> None:
        for child in self.children():
            bind = getattr(child, "bind_scorer", None)
            if callable(bind):
                bind(scorer)


def steps_of(sample: Sample) -> list[str]:
    """The completion's steps: ``Sample.steps`` (the pipeline fills them) or the default segmentation."""
    return list(sample.steps) if sample.steps else Segmenter().steps(sample.completion)


def checked(outs: list[RewardOutput], group: Sequence[Sample], who: str) -> list[RewardOutput]:
    if len(outs) != len(group):
        raise RewardError(f"reward '{who}' returned {len(outs)} outputs for {len(group)} completions")
    return outs


def scalars(
    module: RewardModule, group: Sequence[Sample], default: float | None = None
) -> list[float | None]:
    """Scalar per completion; a module with only step rewards contributes their sum."""
    out: list[float | None] = []
    for o in checked(module.score_group(group), group, module.name):
        v = trajectory_value(o)
        out.append(default if v is None else v)
    return out


def step_lists(module: RewardModule, group: Sequence[Sample]) -> list[list[float]]:
    """Per-step values per completion from a module that emits step rewards."""
    out: list[list[float]] = []
    for s, o in zip(group, checked(module.score_group(group), group, module.name), strict=True):
        if o.step_rewards is None:
            out.append([])
            continue
        if len(o.step_rewards) != len(steps_of(s)):
            raise RewardError(
                f"'{module.name}' gave {len(o.step_rewards)} step rewards for {len(steps_of(s))} steps"
            )
        out.append([float(x) for x in o.step_rewards])
    return out


def float_list(value: Any, what: str) -> list[float]:
    if not isinstance(value, list | tuple):
        raise RewardError(f"{what} must be a list of numbers, got {type(value).__name__}")
    try:
        return [float(x) for x in value]
    except (TypeError, ValueError) as exc:
        raise RewardError(f"{what} must be a list of numbers: {exc}") from exc


def registered(factory: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a plain function as a factory the registry calls with the module params."""
    factory._swarmrl_factory = True  # type: ignore[attr-defined]
    return factory


def with_registry(cls: Callable[..., Any], registry: Registry) -> Callable[..., Any]:
    """Factory for a composite class: passes the registry so specs can name any registered module."""

    def make(**params: Any) -> Any:
        try:
            return cls(registry=registry, **params)
        except ValueError as exc:  # e.g. float("abc") for a numeric parameter
            raise RewardError(f"bad parameter value: {exc}") from exc

    return registered(make)


def need(params_ok: bool, message: str) -> None:
    """Raise ``RewardError(message)`` unless ``params_ok`` (input validation without ``assert``)."""
    if not params_ok:
        raise RewardError(message)
