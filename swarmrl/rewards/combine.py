"""Pure reward transforms and combinations (docs/rewards.md sections 6, 7, 10). Plain floats.

Also the pipeline-level combination modes (``weighted_sum``, ``lsc_and``, ``par``, ``ensemble``, ``gate``) that
turn the per-module scalars of one completion into its training reward.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from swarmrl.errors import RewardError
from swarmrl.rewards.literature import heron_scores
from swarmrl.rewards.shaping import Comparator, gate_open

Aggregate = Literal["mean", "median", "mean_minus_std", "worst_case", "uwo"]


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def log_sigmoid(x: float) -> float:
    """``log sigma(x)`` without overflow or log(0) for large |x|."""
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


# --- section 6: LSC --------------------------------------------------------------------------------------


def lsc(r: float, r_ref: float) -> float:
    """``u = log sigma(r - r_ref)`` (<= 0, saturating at 0)."""
    return log_sigmoid(float(r) - float(r_ref))


def lsc_and(rewards: Sequence[float], refs: Sequence[float]) -> float:
    """Logical AND of properties: ``sum_i log sigma(r_i - r_ref,i) = log prod_i sigma(.)``."""
    if len(rewards) != len(refs):
        raise RewardError("LSC AND needs one reference per property")
    return sum(lsc(r, q) for r, q in zip(rewards, refs, strict=True))


def normal_quantile_reference(
    refs: Sequence[float], q: float = 0.85, ddof: int = 1, eps: float = 1e-5
) -> float:
    """``Phi^-1(q; mu, s + eps)`` of a Normal fitted to reference rewards (PAR repo: q 0.85, sample std)."""
    values = [float(x) for x in refs]
    if len(values) <= ddof:
        raise RewardError(f"a quantile reference needs more than {ddof} reference rewards")
    if not 0.0 < q < 1.0:
        raise RewardError("reference quantile must be in (0, 1)")
    mu = sum(values) / len(values)
    var = sum((x - mu) ** 2 for x in values) / (len(values) - ddof)
    return statistics.NormalDist(mu, math.sqrt(var) + eps).inv_cdf(q)


# --- section 7: PAR --------------------------------------------------------------------------------------


def par(r: float, refs: Sequence[float], k: float = 1.0, max_refs: int = 10) -> float:
    """``(1/M) sum_m sigma(k (r - r_ref,m))`` over the first ``max_refs`` references (average win-rate)."""
    used = [float(x) for x in refs[:max_refs]]
    if not used:
        raise RewardError("PAR needs at least one reference reward")
    return sum(sigmoid(k * (float(r) - x)) for x in used) / len(used)


# --- section 10: ensembles and Ctrl-U --------------------------------------------------------------------


def aggregate(values: Sequence[float], method: Aggregate = "mean", lam: float = 1.0, ddof: int = 0) -> float:
    """Ensemble aggregation: mean, median, mean - lam*std, worst case (min), UWO mean - lam*variance."""
    v = [float(x) for x in values]
    if not v:
        raise RewardError("an ensemble needs at least one member value")
    mean = sum(v) / len(v)
    if method == "mean":
        return mean
    if method == "median":
        return float(statistics.median(v))
    if method == "worst_case":
        return min(v)
    var = 0.0 if len(v) <= ddof else sum((x - mean) ** 2 for x in v) / (len(v) - ddof)
    if method == "mean_minus_std":
        return mean - lam * math.sqrt(var)
    if method == "uwo":
        return mean - lam * var
    raise RewardError(f"unknown ensemble aggregate {method!r}")


def ctrl_u_weight(uncertainty: float) -> float:
    """Ctrl-U style reward weight ``exp(-U)``."""
    return math.exp(-float(uncertainty))


def ctrl_u_loss(reward_loss: float, uncertainty: float, lam: float) -> float:
    """Ctrl-U uncertainty-regularised loss ``L^c / exp(U) + lam * U`` (for a trainer hook)."""
    return float(reward_loss) / math.exp(float(uncertainty)) + lam * float(uncertainty)


# --- pipeline-level combination --------------------------------------------------------------------------

CombineMode = Literal["weighted_sum", "lsc_and", "par", "ensemble", "gate", "heron"]
MODES: tuple[str, ...] = ("weighted_sum", "lsc_and", "par", "ensemble", "gate", "heron")


@dataclass(frozen=True)
class CombineConfig:
    """How module scalars become the training reward.

    * ``weighted_sum`` (default): ``sum_m w_m v_m``; modules returning None are skipped.
    * ``lsc_and``: ``sum_m w_m log sigma(v_m - ref_m)``; ``refs`` maps module name to a fixed reference,
      else ``ref_column`` in ``Sample.extras`` gives reference rewards (a list, or a dict by module name)
      reduced with ``quantile`` (default 0.85, PAR's choice; the LSC paper's quantile is UNCONFIRMED).
    * ``par``: ``sum_m w_m PAR(v_m, refs)`` with references from ``ref_column`` (k, max_refs).
    * ``ensemble``: ``aggregate`` of the module values (weights ignored).
    * ``gate``: the first module is the outcome: ``v_0 + 1[v_0 cmp threshold] * sum_{m>0} w_m v_m`` (G-RA).
    * ``heron``: hierarchical comparison (HERON, Bukharin et al., arXiv 2309.02632): the modules are factors
      ranked by importance (``order``, default: module order); completion a beats b at the first factor whose
      values differ by more than its margin (``margins`` by module name, default 0). The paper's rule (TEXT);
      the reward is then each completion's win-rate over its group (the paper trains a reward model on these
      preferences; using the win-rate directly is UNCONFIRMED). Weights and scales are ignored: a
      correct-but-badly-formatted answer beats a wrong-but-well-formatted one whatever their units.
    """

    mode: CombineMode = "weighted_sum"
    refs: dict[str, float] = field(default_factory=dict)
    ref_column: str = "ref_rewards"
    quantile: float = 0.85
    k: float = 1.0
    max_refs: int = 10
    aggregate: Aggregate = "mean"
    lam: float = 1.0
    ddof: int = 0
    threshold: float = 1.0
    comparator: Comparator = ">="
    order: tuple[str, ...] = ()
    margins: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> CombineConfig:
        cfg = dict(config or {})
        allowed = set(cls.__dataclass_fields__)
        unknown = set(cfg) - allowed
        if unknown:
            raise RewardError(f"unknown combine options {sorted(unknown)}; allowed: {sorted(allowed)}")
        if cfg.get("mode", "weighted_sum") not in MODES:
            raise RewardError(f"combine.mode must be one of {', '.join(MODES)}")
        if "order" in cfg:
            if not isinstance(cfg["order"], list | tuple) or not all(
                isinstance(x, str) for x in cfg["order"]
            ):
                raise RewardError("combine.order must be a list of module names")
            cfg["order"] = tuple(cfg["order"])
        if "margins" in cfg:
            if not isinstance(cfg["margins"], dict):
                raise RewardError("combine.margins must map module names to margins >= 0")
            try:
                cfg["margins"] = {str(k): float(v) for k, v in cfg["margins"].items()}
            except (TypeError, ValueError) as exc:
                raise RewardError(f"combine.margins must hold numbers: {exc}") from exc
            if any(not math.isfinite(v) or v < 0 for v in cfg["margins"].values()):
                raise RewardError("combine.margins must be finite and >= 0")
        if cfg.get("aggregate", "mean") not in ("mean", "median", "mean_minus_std", "worst_case", "uwo"):
            raise RewardError("combine.aggregate must be mean, median, mean_minus_std, worst_case or uwo")
        if cfg.get("comparator", ">=") not in (">=", ">", "none"):
            raise RewardError("combine.comparator must be '>=', '>' or 'none'")
        if not 0.0 < float(cfg.get("quantile", 0.85)) < 1.0:
            raise RewardError("combine.quantile must be in (0, 1)")
        if int(cfg.get("max_refs", 10)) < 1:
            raise RewardError("combine.max_refs must be >= 1")
        return cls(**cfg)


def _module_refs(extras: dict[str, Any], column: str, name: str) -> list[float]:
    raw = extras.get(column)
    if isinstance(raw, dict):
        raw = raw.get(name)
    if not isinstance(raw, list | tuple) or not raw:
        raise RewardError(
            f"combine needs reference rewards for '{name}' in Sample.extras['{column}'] "
            "(a list, or a dict of lists by module name), or a fixed value in combine.refs"
        )
    return [float(x) for x in raw]


def combine_values(
    names: Sequence[str],
    weights: Sequence[float],
    values: Sequence[float | None],
    extras: dict[str, Any],
    config: CombineConfig,
) -> float:
    """The training reward of one completion from its module values (None = not applicable)."""
    present = [
        (n, w, float(v)) for n, w, v in zip(names, weights, values, strict=True) if v is not None and _ok(v)
    ]
    mode = config.mode
    if mode == "weighted_sum":
        return sum(w * v for _, w, v in present)
    if mode == "ensemble":
        return (
            aggregate([v for _, _, v in present], config.aggregate, config.lam, config.ddof)
            if present
            else 0.0
        )
    if mode == "gate":
        if not names or not _ok(values[0]):
            return 0.0
        head = float(values[0])  # type: ignore[arg-type]
        rest = sum(w * v for n, w, v in present if n != names[0])
        return head + (rest if gate_open(head, config.threshold, config.comparator) else 0.0)
    total = 0.0
    for n, w, v in present:
        if mode == "lsc_and":
            ref = config.refs.get(n)
            if ref is None:
                ref = normal_quantile_reference(_module_refs(extras, config.ref_column, n), config.quantile)
            total += w * lsc(v, ref)
        elif mode == "par":
            total += w * par(v, _module_refs(extras, config.ref_column, n), config.k, config.max_refs)
        else:
            raise RewardError(f"unknown combine mode {mode!r}")
    return total


def heron_group(
    names: Sequence[str], values: Sequence[Sequence[float | None]], config: CombineConfig
) -> list[float]:
    """HERON rewards of one group: ``values[i]`` are completion i's module scalars in ``names`` order."""
    order = list(config.order) or list(names)
    unknown = [n for n in order if n not in names]
    if unknown:
        raise RewardError(f"combine.order names {unknown}, which are not reward modules here")
    idx = [list(names).index(n) for n in order]
    factors = [[None if not _ok(row[k]) else row[k] for k in idx] for row in values]
    return heron_scores(factors, [config.margins.get(n, 0.0) for n in order])


def _ok(v: float | None) -> bool:
    return v is not None and not math.isnan(v)
