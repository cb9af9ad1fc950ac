"""The reward-module catalogue (docs/rewards.md sections 1-18), registered by name with ``register_all``.

Composite modules (those taking other modules as ``{name, params}`` specs) get the registry they are
registered in, so a spec can name any module, plugins included. See ``CATALOGUE.md`` for the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swarmrl.rewards.catalogue import literature, model, outcome, process, textual
from swarmrl.rewards.catalogue.common import registered, with_registry

if TYPE_CHECKING:
    from swarmrl.rewards.registry import Registry

PLAIN: tuple[Any, ...] = (
    process.StepMatch,
    process.Column,
    process.ColumnSteps,
    process.CarlDrive,
    outcome.Verpo,
    outcome.CoReward,
    textual.ThinkFormat,
    textual.R1Format,
    textual.TagCount,
    textual.RlprFormat,
    textual.ReasoningSteps,
    textual.Accuracy,
    textual.DapoOverlong,
    textual.LinearOverlong,
    model.LogprobAnswer,
    model.VeriFree,
    model.Rlpr,
    model.Igpo,
    model.Prime,
    literature.P2S,
    literature.Slate,
)

COMPOSITE: tuple[Any, ...] = (
    process.AtLastStep,
    process.GatedRewardAccumulation,
    process.GatedLevels,
    process.PrmClipDelta,
    process.PureMinForm,
    process.ReNorm,
    process.CarlMultiplicative,
    outcome.Lsc,
    outcome.Par,
    outcome.Ensemble,
    outcome.CtrlU,
    outcome.GroupNormalized,
    textual.Rpr,
    textual.RprCalibration,
    textual.CosineLength,
    textual.KimiLength,
    textual.GrpoLambda,
    model.ProgressMC,
    model.MrtProgress,
    literature.PotentialShaping,
    literature.ExploreBonus,
    literature.Arena,
    literature.Oprl,
    literature.Tvm,
)


def _clip_delta_alias(registry: Registry, mode: str) -> Any:
    def make(**params: Any) -> Any:
        params.setdefault("mode", mode)
        return process.PrmClipDelta(registry=registry, **params)

    return registered(make)


def register_all(reg: Registry) -> None:
    """Register every catalogue module in ``reg`` (built-ins of the same name are left alone)."""
    for cls in PLAIN:
        if cls.name not in reg:
            reg.register(cls.name, cls)
    for cls in COMPOSITE:
        if cls.name not in reg:
            reg.register(cls.name, with_registry(cls, reg))
    reg.register("prm_clip", _clip_delta_alias(reg, "clip"))
    reg.register("prm_delta", _clip_delta_alias(reg, "delta"))


def names() -> list[str]:
    return sorted([c.name for c in PLAIN + COMPOSITE] + ["prm_clip", "prm_delta"])
