"""Reward modules by name: built-ins, the ``swarmrl.rewards`` entry-point group, and TRL-style callables.

A registry is an object (no global mutable state); ``default_registry()`` builds a fresh one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points
from typing import Any

from swarmrl.errors import RewardError
from swarmrl.rewards.base import RewardModule, RewardOutput, Sample
from swarmrl.rewards.builtin import AnswerFormat, DatasetScore, ExactMatch

ENTRY_POINT_GROUP = "swarmrl.rewards"
Factory = Callable[..., Any]


class CallableModule:
    """Wraps a TRL-style ``f(prompts, completions, **columns) -> list[float | None]`` unchanged."""

    def __init__(self, name: str, fn: Callable[..., Sequence[float | None]], params: dict[str, Any]) -> None:
        self.name = name
        self.fn = fn
        self.params = params

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        columns: dict[str, list[Any]] = {"answer": [s.answer for s in group]}
        columns["solution"] = columns["answer"]
        columns["completion_ids"] = [s.completion_ids for s in group]
        for key in {k for s in group for k in s.extras}:
            columns[key] = [s.extras.get(key) for s in group]
        values = self.fn(
            prompts=[s.prompt for s in group],
            completions=[s.completion for s in group],
            **columns,
            **self.params,
        )
        values = list(values)
        if len(values) != len(group):
            raise RewardError(
                f"reward '{self.name}' returned {len(values)} values for {len(group)} completions"
            )
        return [RewardOutput(None if v is None else float(v)) for v in values]


class Registry:
    def __init__(self) -> None:
        self._factories: dict[str, Factory] = {}

    def register(self, name: str, factory: Factory) -> None:
        self._factories[name] = factory

    def names(self) -> list[str]:
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def create(self, name: str, params: dict[str, Any] | None = None) -> RewardModule:
        params = dict(params or {})
        factory = self._factories.get(name)
        if factory is None:
            raise RewardError(f"unknown reward module '{name}'; available: {', '.join(self.names())}")
        if inspect.isclass(factory) or getattr(factory, "_swarmrl_factory", False):
            try:
                module = factory(**params)
            except TypeError as exc:
                raise RewardError(f"bad params for reward '{name}': {exc}") from exc
        else:
            module = factory
        if isinstance(module, RewardModule):
            return module
        if callable(module):
            return CallableModule(name, module, params if not inspect.isclass(factory) else {})
        raise RewardError(f"entry point '{name}' is neither a reward module nor a callable")


def _builtin(reg: Registry) -> None:
    reg.register(ExactMatch.name, ExactMatch)
    reg.register(DatasetScore.name, DatasetScore)
    reg.register(AnswerFormat.name, AnswerFormat)


def default_registry(load_plugins: bool = True) -> Registry:
    reg = Registry()
    _builtin(reg)
    try:
        from swarmrl.rewards import catalogue
    except ImportError:  # the catalogue is optional at this layer
        pass
    else:
        register_all = getattr(catalogue, "register_all", None)
        if register_all is not None:
            register_all(reg)
    if load_plugins:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in reg:
                continue
            try:
                reg.register(ep.name, ep.load())
            except Exception as exc:
                raise RewardError(f"reward plugin '{ep.name}' ({ep.value}) failed to load: {exc}") from exc
    return reg


def available() -> list[str]:
    return default_registry().names()


def create(name: str, params: dict[str, Any] | None = None) -> RewardModule:
    return default_registry().create(name, params)
