"""The reward pipeline a config assembles: segment -> scorers -> combination -> dense credit assignment.

Two channels leave a module (docs/rewards.md section 0.4):

* **outcome**: ``RewardOutput.scalar`` values, combined per completion (``combine``, default weighted sum)
  into ``ScoredGroup.rewards``; the advantage estimator normalises them per group;
* **dense**: ``step_rewards`` (placed on each step's last token with the pipeline's one segmentation) and
  ``token_rewards``, weighted, then turned into per-token values by credit assignment (``credit``, default
  reverse cumulative returns) in ``ScoredGroup.token_rewards``, which :func:`token_advantages` adds to the
  broadcast outcome advantage, so step-level shaping changes the gradient.

Exact-match accuracy is always computed beside the training reward, because a partial-credit scorer can
rise while accuracy stays at zero.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from swarmrl.errors import RewardError
from swarmrl.rewards.advantages import zero_variance
from swarmrl.rewards.base import RewardModule, RewardOutput, Sample, trajectory_value
from swarmrl.rewards.builtin import ExactMatch
from swarmrl.rewards.combine import CombineConfig, combine_values, heron_group
from swarmrl.rewards.credit import CreditConfig, assign
from swarmrl.rewards.registry import Registry, default_registry
from swarmrl.rewards.scorer import PolicyScorer, ScorerSlot
from swarmrl.rewards.segment import TOKEN_OFFSETS, Segmenter, step_token_ends

log = logging.getLogger(__name__)


@dataclass
class ScoredGroup:
    """Locally computed rewards for one group.

    ``rewards`` is the combined outcome reward per completion; ``modules`` each module's value per
    completion for metrics (its scalar, else the sum of its step/token rewards; None = not applicable);
    ``accuracy`` the exact-match score; ``token_rewards`` the per-token dense values after credit
    assignment (aligned to ``completion_ids``; added to the outcome advantage by :func:`token_advantages`);
    ``dense_totals`` each completion's weighted sum of dense rewards (None when no module was dense).
    """

    rewards: list[float]
    modules: dict[str, list[float | None]]
    accuracy: list[float]
    token_rewards: list[list[float]] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    dense_totals: list[float] | None = None

    @property
    def zero_variance(self) -> bool:
        """No learning signal: equal outcome rewards and no dense values (all zero, or identical rows)."""
        if not zero_variance(self.rewards):
            return False
        if self.token_rewards is None or len(self.token_rewards) < 2:
            return True
        if all(abs(v) <= 1e-12 for row in self.token_rewards for v in row):
            return True
        first = self.token_rewards[0]
        return all(
            len(row) == len(first) and all(abs(a - b) <= 1e-9 for a, b in zip(row, first, strict=True))
            for row in self.token_rewards[1:]
        )

    @property
    def totals(self) -> list[float]:
        """Outcome reward plus the dense total: the trajectory return (for comparisons and metrics)."""
        if self.dense_totals is None:
            return list(self.rewards)
        return [r + d for r, d in zip(self.rewards, self.dense_totals, strict=True)]


@dataclass
class _Entry:
    name: str
    weight: float
    module: RewardModule


def _finite(name: str, out: RewardOutput, warned: set[str]) -> RewardOutput:
    """A non-finite reward (e.g. log 0 = -inf) would poison the group's advantages with NaN: such an output
    is treated as "not applicable" (None), and logged once per module."""
    values = [out.scalar] if out.scalar is not None else []
    values += list(out.step_rewards or []) + list(out.token_rewards or [])
    if all(math.isfinite(v) for v in values):
        return out
    if name not in warned:
        warned.add(name)
        log.warning("reward '%s' returned a non-finite value; treating it as not applicable", name)
    return RewardOutput(None, info={**out.info, "non_finite": True})


def _walk(module: Any) -> Iterator[Any]:
    yield module
    children = getattr(module, "children", None)
    if callable(children):
        for child in children():
            yield from _walk(child)


class RewardPipeline:
    """Modules -> outcome combination + dense credit assignment (see the module docstring).

    ``combine`` / ``credit`` / ``segmenter`` accept the config objects or plain dicts (as in YAML).
    """

    def __init__(
        self,
        entries: Sequence[tuple[str, float, RewardModule]],
        report: Sequence[RewardModule] = (),
        *,
        combine: CombineConfig | dict[str, Any] | None = None,
        credit: CreditConfig | dict[str, Any] | None = None,
        segmenter: Segmenter | dict[str, Any] | None = None,
    ):
        if not entries:
            raise RewardError("a reward pipeline needs at least one module")
        self.entries = [_Entry(n, w, m) for n, w, m in entries]
        self._warned_nonfinite: set[str] = set()
        self.report = [m for m in report if m.name not in {e.name for e in self.entries}]
        self._accuracy = ExactMatch()
        self.combine = combine if isinstance(combine, CombineConfig) else CombineConfig.from_config(combine)
        self.credit = credit if isinstance(credit, CreditConfig) else CreditConfig.from_config(credit)
        self.segmenter = segmenter if isinstance(segmenter, Segmenter) else Segmenter.from_config(segmenter)

    @property
    def module_names(self) -> list[str]:
        return [e.name for e in self.entries] + [m.name for m in self.report]

    def walk(self) -> Iterator[Any]:
        """Every module of the pipeline, sub-modules of composites included."""
        for top in [e.module for e in self.entries] + list(self.report):
            yield from _walk(top)

    @property
    def needs_scorer(self) -> bool:
        """True when some module (or sub-module) scores with the policy (a ``ScorerSlot``)."""
        return any(isinstance(m, ScorerSlot) for m in self.walk())

    @property
    def needs_reference(self) -> bool:
        """True when some module asks the scorer for reference-model log-probs (PRIME)."""
        return any(bool(getattr(m, "needs_reference", False)) for m in self.walk())

    def state_dict(self) -> dict[str, Any]:
        """State of modules that learn across rounds (``state_dict`` methods, e.g. exploration counts), keyed
        by position and name in :meth:`walk` order; the node saves it in its checkpoint."""
        out: dict[str, Any] = {}
        for i, m in enumerate(self.walk()):
            get = getattr(m, "state_dict", None)
            if callable(get):
                out[f"{i}:{m.name}"] = get()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; entries of modules no longer in the pipeline are ignored."""
        for i, m in enumerate(self.walk()):
            load = getattr(m, "load_state_dict", None)
            saved = state.get(f"{i}:{m.name}")
            if callable(load) and saved is not None:
                load(saved)

    def bind_scorer(self, scorer: PolicyScorer | None) -> None:
        """Give every module (and sub-module) that needs the policy the trainer's scorer handle."""
        for m in self.walk():
            bind = getattr(m, "bind_scorer", None)
            if callable(bind):
                bind(scorer)

    def prepare(self, group: Sequence[Sample]) -> list[Sample]:
        """Copies of the samples with ``steps`` filled by this pipeline's segmenter (when empty)."""
        return [
            s if s.steps else dataclasses.replace(s, steps=self.segmenter.steps(s.completion)) for s in group
        ]

    def score_group(self, group: Sequence[Sample]) -> ScoredGroup:
        return self.score([group])[0]

    def score(self, groups: Sequence[Sequence[Sample]]) -> list[ScoredGroup]:
        """Score a round's groups; batch-level modules (``score_batch``) see all groups at once."""
        prepared = [self.prepare(g) for g in groups]
        per_entry = [self._run(e.module, e.name, prepared) for e in self.entries]
        per_report = [self._run(m, m.name, prepared) for m in self.report]
        return [
            self._assemble(g, [outs[k] for outs in per_entry], [outs[k] for outs in per_report])
            for k, g in enumerate(prepared)
        ]

    def _run(self, module: RewardModule, name: str, groups: list[list[Sample]]) -> list[list[RewardOutput]]:
        batch = getattr(module, "score_batch", None)
        outs = batch(groups) if callable(batch) else [module.score_group(g) for g in groups]
        if len(outs) != len(groups):
            raise RewardError(f"reward '{name}' returned {len(outs)} groups for {len(groups)}")
        for g, o in zip(groups, outs, strict=True):
            if len(o) != len(g):
                raise RewardError(f"reward '{name}' returned {len(o)} outputs for {len(g)} completions")
        return [[_finite(name, x, self._warned_nonfinite) for x in o] for o in outs]

    def _assemble(
        self, group: list[Sample], outs: list[list[RewardOutput]], report: list[list[RewardOutput]]
    ) -> ScoredGroup:
        n = len(group)
        modules: dict[str, list[float | None]] = {}
        for entry, o in zip(self.entries, outs, strict=True):
            modules[entry.name] = [trajectory_value(x) for x in o]
        for module, o in zip(self.report, report, strict=True):
            modules[module.name] = [trajectory_value(x) for x in o]
        names = [e.name for e in self.entries]
        weights = [e.weight for e in self.entries]
        if self.combine.mode == "heron":
            rewards = heron_group(names, [[o[i].scalar for o in outs] for i in range(n)], self.combine)
        else:
            rewards = [
                combine_values(names, weights, [o[i].scalar for o in outs], s.extras, self.combine)
                for i, s in enumerate(group)
            ]
        accuracy = [float(o.scalar or 0.0) for o in self._accuracy.score_group(group)]
        scored = ScoredGroup(rewards=rewards, modules=modules, accuracy=accuracy)
        if any(o[i].step_rewards or o[i].token_rewards for o in outs for i in range(n)):
            self._dense(group, outs, scored)
        return scored

    def _dense(self, group: list[Sample], outs: list[list[RewardOutput]], scored: ScoredGroup) -> None:
        placed_rows, masks, totals = [], [], []
        for i, s in enumerate(group):
            n_tok = len(s.completion_ids)
            placed, mask, total = [0.0] * n_tok, [False] * n_tok, 0.0
            ends: list[int] | None = None
            for entry, o in zip(self.entries, outs, strict=True):
                out = o[i]
                if out.step_rewards:
                    if len(out.step_rewards) != len(s.steps):
                        raise RewardError(
                            f"reward '{entry.name}' gave {len(out.step_rewards)} step rewards for "
                            f"{len(s.steps)} steps"
                        )
                    total += entry.weight * sum(out.step_rewards)
                    if n_tok:
                        if ends is None:
                            ends = step_token_ends(s.completion, s.steps, n_tok, s.extras.get(TOKEN_OFFSETS))
                        for r, end in zip(out.step_rewards, ends, strict=True):
                            placed[end] += entry.weight * float(r)
                            mask[end] = True
                if out.token_rewards:
                    total += entry.weight * sum(out.token_rewards)
                    if n_tok:
                        if len(out.token_rewards) != n_tok:
                            raise RewardError(
                                f"reward '{entry.name}' gave {len(out.token_rewards)} token rewards for "
                                f"{n_tok} tokens"
                            )
                        for t, r in enumerate(out.token_rewards):
                            placed[t] += entry.weight * float(r)
                            mask[t] = True
            placed_rows.append(placed)
            masks.append(mask)
            totals.append(total)
        scored.dense_totals = totals
        if self.credit.mode == "sum_to_outcome":
            scored.rewards = [r + d for r, d in zip(scored.rewards, totals, strict=True)]
            scored.dense_totals = None
            return
        scored.token_rewards = assign(placed_rows, masks, self.credit)
        unplaced = sum(1 for s in group if not s.completion_ids)
        if unplaced:
            scored.info["dense_unplaced"] = unplaced


def build_pipeline(
    modules: Sequence[tuple[str, float, dict[str, Any]]],
    report: Sequence[str] = (),
    registry: Registry | None = None,
    *,
    combine: dict[str, Any] | None = None,
    credit: dict[str, Any] | None = None,
    segment: dict[str, Any] | None = None,
) -> RewardPipeline:
    """Build from (name, weight, params) triples; unknown names raise RewardError listing what exists.

    ``combine``, ``credit`` and ``segment`` are the pipeline-level options (see ``CombineConfig``,
    ``CreditConfig``, ``Segmenter``); None means the defaults (weighted sum, returns, ``;``/blank-line steps).
    """
    reg = registry or default_registry()
    entries = [(name, weight, reg.create(name, params)) for name, weight, params in modules]
    return RewardPipeline(
        entries, [reg.create(name) for name in report], combine=combine, credit=credit, segmenter=segment
    )


def token_advantages(
    scored: Sequence[ScoredGroup],
    groups: Sequence[Sequence[Sample]],
    estimator: str = "grpo",
) -> list[list[list[float]]]:
    """Per-token advantages ``[group][completion][token]`` for the loss.

    The outcome advantage of each completion is broadcast to all of its tokens (``len(completion_ids)``);
    dense per-token values in ``ScoredGroup.token_rewards`` (same alignment) are added on top, so two
    completions with equal totals but different step rewards get different per-token advantages.
    """
    from swarmrl.rewards.advantages import compute_advantages

    outcome = compute_advantages([s.rewards for s in scored], estimator)  # type: ignore[arg-type]
    out: list[list[list[float]]] = []
    for sg, group, adv in zip(scored, groups, outcome, strict=True):
        per_group = []
        for i, sample in enumerate(group):
            n_tok = len(sample.completion_ids)
            row = [adv[i]] * n_tok
            if sg.token_rewards is not None:
                dense = sg.token_rewards[i]
                if len(dense) != n_tok:
                    raise RewardError(f"token rewards have {len(dense)} entries for {n_tok} tokens")
                row = [a + d for a, d in zip(row, dense, strict=True)]
            per_group.append(row)
        out.append(per_group)
    return out
