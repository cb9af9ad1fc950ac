"""Step-level (process) modules: verifiable steps, columns, G-RA, Clip/Delta, PURE, ReNorm, CaRL.

Conventions: ``step_rewards`` align to ``Sample.steps`` (the pipeline's segmentation) and go to the dense
channel (placed on each step's last token, then credit assignment); ``scalar`` goes to the outcome channel.
A module that only shapes steps returns ``scalar=None`` so nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from swarmrl.errors import RewardError
from swarmrl.rewards import requirements as R
from swarmrl.rewards.base import RewardModule, RewardOutput, Sample
from swarmrl.rewards.catalogue.common import (
    Composite,
    Spec,
    build_sub,
    float_list,
    need,
    scalars,
    step_lists,
    steps_of,
)
from swarmrl.rewards.requirements import Requirements, needs
from swarmrl.rewards.shaping import (
    Comparator,
    carl_step_reward,
    gra,
    min_form,
    priority_gate,
    prm_score_from_logits,
    prm_step_rewards,
    renorm,
)

if TYPE_CHECKING:
    from swarmrl.rewards.registry import Registry


class StepMatch:
    """Verifiable per-step reward for multi-step tasks (``multistep``): 1.0 where the i-th step of the
    completion equals the i-th gold partial result (``Sample.gold_steps``), else 0.0; steps beyond the gold
    chain get 0. Not applicable (None) when the task has no gold steps.

    ``scalar``: ``none`` (default; dense only, so it is not counted twice), ``mean`` (fraction of gold steps
    matched in place) or ``all`` (1.0 iff every gold step matched and no extra steps).
    """

    name = "step_match"

    def __init__(self, scalar: Literal["none", "mean", "all"] = "none") -> None:
        need(scalar in ("none", "mean", "all"), "step_match.scalar must be none, mean or all")
        self.scalar = scalar

    def requires(self) -> Requirements:
        return needs(R.gold_steps(), R.steps())

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s in group:
            gold = [g.strip() for g in s.gold_steps]
            if not gold:
                out.append(RewardOutput(None))
                continue
            steps = steps_of(s)
            hits = [1.0 if i < len(gold) and st.strip() == gold[i] else 0.0 for i, st in enumerate(steps)]
            value: float | None = None
            if self.scalar == "mean":
                value = sum(hits[: len(gold)]) / len(gold)
            elif self.scalar == "all":
                value = 1.0 if len(steps) == len(gold) and all(hits) else 0.0
            out.append(RewardOutput(value, step_rewards=hits, info={"matched": int(sum(hits))}))
        return out


class Column:
    """A precomputed scalar from ``Sample.extras[key]`` (e.g. an external RM score); None when absent."""

    name = "column"

    def __init__(self, key: str = "score") -> None:
        self.key = key

    def requires(self) -> Requirements:
        return needs(R.column(self.key))

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s in group:
            v = s.extras.get(self.key)
            out.append(RewardOutput(None if v is None else float(v)))
        return out


class ColumnSteps:
    """Precomputed per-step scores (e.g. PRM outputs) from ``Sample.extras[key]``, one per step.

    ``transform``: ``none`` or ``two_class_logits`` (each entry is ``[neg, pos]`` logits; PURE's score
    ``softmax[1] - softmax[0]``). The count must equal the pipeline's step count (same segmentation).
    """

    name = "column_steps"

    def __init__(
        self, key: str = "step_scores", transform: Literal["none", "two_class_logits"] = "none"
    ) -> None:
        need(
            transform in ("none", "two_class_logits"),
            "column_steps.transform must be none or two_class_logits",
        )
        self.key, self.transform = key, transform

    def requires(self) -> Requirements:
        return needs(R.column(self.key, "per-step score column"), R.steps())

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s in group:
            raw = s.extras.get(self.key)
            if raw is None:
                out.append(RewardOutput(None))
                continue
            if self.transform == "two_class_logits":
                values = [prm_score_from_logits(float_list(x, f"extras['{self.key}'] entry")) for x in raw]
            else:
                values = float_list(raw, f"extras['{self.key}']")
            if len(values) != len(steps_of(s)):
                raise RewardError(
                    f"extras['{self.key}'] has {len(values)} step scores for {len(steps_of(s))} steps; "
                    "score steps with the same segmentation the pipeline uses"
                )
            out.append(RewardOutput(None, step_rewards=values))
        return out


class AtLastStep(Composite):
    """Moves another module's scalar onto the last step (e.g. PURE's verifiable reward at the last token,
    so it joins the dense returns). With no steps the value stays a scalar."""

    name = "at_last_step"

    def __init__(self, registry: Registry, of: Spec = "exact_match") -> None:
        self.of = build_sub(registry, of, "at_last_step.of")

    def children(self) -> Iterator[RewardModule]:
        yield self.of

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s, v in zip(group, scalars(self.of, group), strict=True):
            n = len(steps_of(s))
            if v is None or n == 0:
                out.append(RewardOutput(v))
            else:
                out.append(RewardOutput(None, step_rewards=[0.0] * (n - 1) + [v]))
        return out


class GatedRewardAccumulation(Composite):
    """G-RA (Sun et al., arXiv 2508.10548): step rewards count only when the outcome passes a threshold.

    ``r~_t = g * r_low_t``, ``g = 1[r_high >= threshold]``; scalar = ``r_high`` (outcome channel), step
    rewards = gated immediate rewards (dense channel); ``info["return"] = r_high + g * sum_t r_low_t``.
    Status: rule TEXT, comparator 2ND; ``threshold`` (placeholder 1.0) and the outcome levels UNCONFIRMED.
    ``comparator``: ``>=`` (default), ``>``, or ``none`` (D-RA baseline, no gate).
    """

    name = "gra"

    def __init__(
        self,
        registry: Registry,
        outcome: Spec = "exact_match",
        steps: Spec = "step_match",
        threshold: float = 1.0,
        comparator: Comparator = ">=",
    ) -> None:
        need(comparator in (">=", ">", "none"), "gra.comparator must be '>=', '>' or 'none'")
        self.outcome = build_sub(registry, outcome, "gra.outcome")
        self.steps = build_sub(registry, steps, "gra.steps")
        self.threshold, self.comparator = float(threshold), comparator

    def children(self) -> Iterator[RewardModule]:
        yield from (self.outcome, self.steps)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        highs = scalars(self.outcome, group, default=0.0)
        lows = step_lists(self.steps, group)
        out = []
        for high, low in zip(highs, lows, strict=True):
            gated, total = gra(float(high or 0.0), low, self.threshold, self.comparator)
            out.append(RewardOutput(high, step_rewards=gated, info={"return": total, "gate": total != high}))
        return out


class GatedLevels(Composite):
    """Multi-level G-RA (2ND): ``levels`` in priority order, each ``{name, params, threshold}``; level i is
    kept only if every higher level passed its threshold. Scalar = sum of kept levels. Thresholds have no
    confirmed defaults (UNCONFIRMED); every level but the last needs one."""

    name = "gated_levels"

    def __init__(
        self, registry: Registry, levels: list[dict[str, Any]], comparator: Comparator = ">="
    ) -> None:
        need(bool(levels), "gated_levels.levels needs at least one level")
        self.modules, self.thresholds = [], []
        for i, level in enumerate(levels):
            spec = {k: v for k, v in level.items() if k != "threshold"}
            self.modules.append(build_sub(registry, spec, f"gated_levels.levels[{i}]"))
            if i < len(levels) - 1:
                need("threshold" in level, f"gated_levels.levels[{i}] needs a threshold")
                self.thresholds.append(float(level["threshold"]))
        self.comparator = comparator

    def children(self) -> Iterator[RewardModule]:
        yield from self.modules

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        cols = [scalars(m, group, default=0.0) for m in self.modules]
        out = []
        for i in range(len(group)):
            kept = priority_gate([float(c[i] or 0.0) for c in cols], self.thresholds, self.comparator)
            out.append(RewardOutput(sum(kept), info={"levels": kept}))
        return out


class PrmClipDelta(Composite):
    """Clip / Delta / Clip-Delta PRM shaping (Gao et al., arXiv 2410.15115).

    Clip ``min(r_k - eta, 0)``, Delta ``r_k - r_{k+1}`` (2ND). ``last``: ``drop`` (option A, d_K = 0,
    default) or ``keep`` (option B, d_K = r_K) — which one the paper uses is UNCONFIRMED. ``eta`` (placeholder
    0.5, must be in the PRM's units) and ``alpha`` (placeholder 1.0) are UNCONFIRMED. ``success`` (optional
    module) adds the outcome reward on the last step. Output: step rewards only (dense channel).
    """

    name = "prm_clip_delta"

    def __init__(
        self,
        registry: Registry,
        steps: Spec = "column_steps",
        mode: Literal["clip", "delta", "clip_delta"] = "clip_delta",
        eta: float = 0.5,
        alpha: float = 1.0,
        last: Literal["drop", "keep"] = "drop",
        success: Spec | None = None,
    ) -> None:
        need(mode in ("clip", "delta", "clip_delta"), "mode must be clip, delta or clip_delta")
        need(last in ("drop", "keep"), "last must be drop or keep")
        self.steps = build_sub(registry, steps, f"{self.name}.steps")
        self.success = None if success is None else build_sub(registry, success, f"{self.name}.success")
        self.mode, self.eta, self.alpha, self.last = mode, float(eta), float(alpha), last

    def children(self) -> Iterator[RewardModule]:
        yield self.steps
        if self.success is not None:
            yield self.success

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        prm = step_lists(self.steps, group)
        succ = scalars(self.success, group, 0.0) if self.success is not None else [0.0] * len(group)
        return [
            RewardOutput(
                None,
                step_rewards=prm_step_rewards(r, self.mode, self.eta, self.alpha, float(v or 0.0), self.last),
            )
            for r, v in zip(prm, succ, strict=True)
        ]


class PureMinForm(Composite):
    """PURE min-form credit assignment (Cheng et al., arXiv 2504.15275; CODE).

    ``soft`` (default): ``r*_k = softmax(-r/T)_k * r_k`` over the steps of one response (T = 0.1, CODE);
    summed returns then approximate the min. ``strict``: raw step scores, to be used with pipeline
    ``credit: {mode: strict_min}`` (``G_t = min(score_t, G_{t+1})``). ``sum``: raw scores with summed returns
    (the "gamma-decay" baseline PURE argues collapses). The verifiable reward is a separate module
    (``at_last_step`` puts it on the last token as in PURE, ``vr_coef`` = its weight, 1.0 in PURE).
    """

    name = "pure_min_form"

    def __init__(
        self,
        registry: Registry,
        steps: Spec = "column_steps",
        temperature: float = 0.1,
        mode: Literal["soft", "strict", "sum"] = "soft",
    ) -> None:
        need(mode in ("soft", "strict", "sum"), "pure_min_form.mode must be soft, strict or sum")
        need(temperature > 0, "pure_min_form.temperature must be > 0")
        self.steps = build_sub(registry, steps, "pure_min_form.steps")
        self.temperature, self.mode = float(temperature), mode

    def children(self) -> Iterator[RewardModule]:
        yield self.steps

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for r in step_lists(self.steps, group):
            shaped = min_form(r, self.temperature) if self.mode == "soft" else list(r)
            out.append(RewardOutput(None, step_rewards=shaped, info={"min": min(r) if r else None}))
        return out


class ReNorm(Composite):
    """ReNorm (Xu et al., arXiv 2509.25598; 2ND reconstruction): ``r_t = r_p,t + r_o - 1`` with the outcome
    clipped to [0, 1], so step rewards are <= 0 for wrong answers and >= 0 for right ones. Dense only."""

    name = "renorm"

    def __init__(
        self, registry: Registry, outcome: Spec = "exact_match", process: Spec = "step_match"
    ) -> None:
        self.outcome = build_sub(registry, outcome, "renorm.outcome")
        self.process = build_sub(registry, process, "renorm.process")

    def children(self) -> Iterator[RewardModule]:
        yield from (self.outcome, self.process)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        outs = scalars(self.outcome, group, 0.0)
        procs = step_lists(self.process, group)
        return [
            RewardOutput(None, step_rewards=renorm(p, float(o or 0.0)))
            for p, o in zip(procs, outs, strict=True)
        ]


class CarlMultiplicative(Composite):
    """CaRL's reward template for agents (Jaeger et al.; CODE for driving, this LLM mapping is ours):
    ``progress * prod(penalty factors in [0, 1]) - terminal_hint * 1[any hard infraction]``.
    ``progress``: module giving task progress; ``penalties``: modules giving soft factors (clipped to [0,1]);
    ``terminal``: modules whose value > 0.5 marks a hard infraction (terminal_hint 1.0, CODE)."""

    name = "carl"

    def __init__(
        self,
        registry: Registry,
        progress: Spec = "exact_match",
        penalties: list[Spec] | None = None,
        terminal: list[Spec] | None = None,
        terminal_hint: float = 1.0,
    ) -> None:
        self.progress = build_sub(registry, progress, "carl.progress")
        self.penalties = [build_sub(registry, p, "carl.penalties") for p in penalties or []]
        self.terminal = [build_sub(registry, t, "carl.terminal") for t in terminal or []]
        self.terminal_hint = float(terminal_hint)

    def children(self) -> Iterator[RewardModule]:
        yield self.progress
        yield from self.penalties
        yield from self.terminal

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        prog = scalars(self.progress, group, 0.0)
        factors = [scalars(m, group, 1.0) for m in self.penalties]
        hards = [scalars(m, group, 0.0) for m in self.terminal]
        out = []
        for i in range(len(group)):
            fs = [min(1.0, max(0.0, 1.0 if (x := f[i]) is None else float(x))) for f in factors]
            value = float(prog[i] or 0.0)
            for f in fs:
                value *= f
            hard = any(float(h[i] or 0.0) > 0.5 for h in hards)
            out.append(
                RewardOutput(
                    value - (self.terminal_hint if hard else 0.0), info={"factors": fs, "hard": hard}
                )
            )
        return out


class CarlDrive:
    """CaRL per-step driving reward (CODE, ``simple_reward.py``) from ``Sample.extras[key]``: a list of step
    dicts with ``progress`` and optional ``outside_lane``, ``overspeed`` (m/s), ``ttc_violated``,
    ``comfort_violations`` (0..6), ``lane_factor``, ``terminal`` (``collision``, ``red_light``,
    ``vehicle_too_close`` subtract ``terminal_hint``; other names end the episode with 0). Scalar = episode
    sum up to the first terminal step; per-step rewards in ``info``."""

    name = "carl_drive"
    HINTED = frozenset({"collision", "red_light", "vehicle_too_close"})

    def __init__(
        self, key: str = "carl_steps", terminal_hint: float = 1.0, overspeed_threshold: float = 2.23
    ):
        self.key, self.terminal_hint, self.overspeed_threshold = (
            key,
            float(terminal_hint),
            float(overspeed_threshold),
        )

    def requires(self) -> Requirements:
        return needs(R.column(self.key, "driving-step column"))

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s in group:
            steps = s.extras.get(self.key)
            if steps is None:
                out.append(RewardOutput(None))
                continue
            rewards = []
            for step in steps:
                term = step.get("terminal")
                rewards.append(
                    carl_step_reward(
                        float(step.get("progress", 0.0)),
                        outside_lane=bool(step.get("outside_lane", False)),
                        overspeed=float(step.get("overspeed", 0.0)),
                        overspeed_threshold=self.overspeed_threshold,
                        ttc_violated=bool(step.get("ttc_violated", False)),
                        comfort_violations=int(step.get("comfort_violations", 0)),
                        lane_factor=float(step.get("lane_factor", 1.0)),
                        terminal_penalty=self.terminal_hint if term in self.HINTED else 0.0,
                    )
                )
                if term:
                    break
            out.append(RewardOutput(sum(rewards), info={"step_rewards": rewards}))
        return out
