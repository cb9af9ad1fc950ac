"""Per-completion modules: VeRPO, LSC, PAR, ensembles, Ctrl-U, group normalisation, Co-Reward."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from swarmrl.errors import RewardError
from swarmrl.rewards import requirements as R
from swarmrl.rewards.advantages import compute_advantages
from swarmrl.rewards.base import RewardModule, RewardOutput, Sample
from swarmrl.rewards.catalogue.common import Composite, Spec, build_sub, float_list, need, scalars
from swarmrl.rewards.combine import (
    Aggregate,
    aggregate,
    ctrl_u_weight,
    lsc,
    normal_quantile_reference,
    par,
)
from swarmrl.rewards.requirements import Requirements, needs
from swarmrl.rewards.scorer import ScorerSlot
from swarmrl.rewards.text import boxed_answer, majority_vote

if TYPE_CHECKING:
    from swarmrl.rewards.registry import Registry


def verpo_weights(passes: Sequence[Sequence[float]]) -> list[float]:
    """Per-test weights ``w_j = (1 - rho_j) / sum_j (1 - rho_j)`` from the group pass matrix (UNCONFIRMED
    weight function). All tests passed by everyone: all weights 0."""
    n = len(passes)
    if n == 0:
        return []
    m = len(passes[0])
    if any(len(row) != m for row in passes):
        raise RewardError("VeRPO: every rollout needs a result for every unit test")
    rho = [sum(float(row[j]) for row in passes) / n for j in range(m)]
    raw = [1.0 - r for r in rho]
    total = sum(raw)
    return [w / total if total > 0 else 0.0 for w in raw]


class Verpo:
    """VeRPO difficulty-weighted unit tests (Wang et al., arXiv 2601.03525).

    Pass matrix from ``Sample.extras[key]`` (one 0/1 per unit test). ``rho_j`` = group pass rate (2ND);
    ``w_j`` proportional to ``1 - rho_j`` (UNCONFIRMED placeholder); dense = ``sum_j w_j p_ij`` (TEXT);
    outcome ``o_i`` = all tests pass. ``combine`` (UNCONFIRMED): ``sum`` -> ``o + lam * dense`` (default,
    lam 1.0), ``gate`` -> ``1`` if ``o`` else ``lam * dense``, ``dense`` -> dense only. Group-dependent: in
    SAPO it is computed on the group actually trained on.
    """

    name = "verpo"

    def __init__(
        self, key: str = "test_results", combine: Literal["sum", "gate", "dense"] = "sum", lam: float = 1.0
    ) -> None:
        need(combine in ("sum", "gate", "dense"), "verpo.combine must be sum, gate or dense")
        self.key, self.combine, self.lam = key, combine, float(lam)

    def requires(self) -> Requirements:
        return needs(R.column(self.key, "unit-test pass matrix"))

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        rows = [s.extras.get(self.key) for s in group]
        present = [i for i, r in enumerate(rows) if r is not None]
        matrix = [float_list(rows[i], f"extras['{self.key}']") for i in present]
        weights = verpo_weights(matrix)
        out: list[RewardOutput] = [RewardOutput(None) for _ in group]
        for i, row in zip(present, matrix, strict=True):
            dense = sum(w * p for w, p in zip(weights, row, strict=True))
            o = 1.0 if row and all(p > 0.5 for p in row) else 0.0
            if self.combine == "sum":
                value = o + self.lam * dense
            elif self.combine == "gate":
                value = 1.0 if o else self.lam * dense
            else:
                value = dense
            out[i] = RewardOutput(value, info={"dense": dense, "outcome": o, "weights": weights})
        return out


def _refs(sample: Sample, column: str, prop: str) -> list[float] | None:
    raw = sample.extras.get(column)
    if isinstance(raw, dict):
        raw = raw.get(prop)
    return None if raw is None else float_list(raw, f"extras['{column}']")


class Lsc(Composite):
    """LSC transform and AND-combination (Wang et al., ICML 2024, arXiv 2402.00742; TEXT).

    ``u = sum_i log sigma(r_i - r_ref,i)`` over ``properties`` (module specs; one property = the transform).
    Per property the reference is ``refs[name]`` if given, else from ``Sample.extras[ref_column]`` (a list of
    reference-policy rewards, or a dict of lists by property name) via ``reference``: ``quantile`` (Normal
    fit, ``quantile`` 0.85 and sample std as in the PAR re-implementation, CODE; the paper's quantile is
    UNCONFIRMED) or ``mean``.
    """

    name = "lsc"

    def __init__(
        self,
        registry: Registry,
        properties: list[Spec] | None = None,
        refs: dict[str, float] | None = None,
        ref_column: str = "ref_rewards",
        reference: Literal["quantile", "mean"] = "quantile",
        quantile: float = 0.85,
        ddof: int = 1,
    ) -> None:
        specs = properties or ["column"]
        self.props = [build_sub(registry, p, "lsc.properties") for p in specs]
        self.prop_names = [p if isinstance(p, str) else str(p["name"]) for p in specs]
        self.refs = {k: float(v) for k, v in (refs or {}).items()}
        need(reference in ("quantile", "mean"), "lsc.reference must be quantile or mean")
        self.ref_column, self.reference, self.quantile, self.ddof = (
            ref_column,
            reference,
            float(quantile),
            int(ddof),
        )

    def children(self) -> Iterator[RewardModule]:
        yield from self.props

    def requires(self) -> Requirements:
        if all(p in self.refs for p in self.prop_names):
            return Requirements()
        return needs(R.column(self.ref_column, "reference-reward column (or set refs)"))

    def _ref(self, sample: Sample, prop: str) -> float:
        if prop in self.refs:
            return self.refs[prop]
        values = _refs(sample, self.ref_column, prop)
        if not values:
            raise RewardError(
                f"lsc: no reference for '{prop}': set refs or Sample.extras['{self.ref_column}']"
            )
        if self.reference == "mean":
            return sum(values) / len(values)
        return normal_quantile_reference(values, self.quantile, self.ddof)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        cols = [scalars(m, group) for m in self.props]
        out = []
        for i, s in enumerate(group):
            vals = [c[i] for c in cols]
            if any(v is None for v in vals):
                out.append(RewardOutput(None))
                continue
            parts = [lsc(float(v), self._ref(s, n)) for v, n in zip(vals, self.prop_names, strict=True)]  # type: ignore[arg-type]
            out.append(RewardOutput(sum(parts), info={"parts": parts}))
        return out


class Par(Composite):
    """Preference As Reward (PorUna-byte/PAR; CODE): ``(1/M) sum_m sigma(k (r - r_ref,m))`` against the first
    ``max_refs`` (10) reference rewards in ``Sample.extras[ref_column]``, ``k`` = 1. The repo's default length
    penalty is a separate module (``linear_overlong``), not bundled."""

    name = "par"

    def __init__(
        self,
        registry: Registry,
        of: Spec = "column",
        ref_column: str = "ref_rewards",
        k: float = 1.0,
        max_refs: int = 10,
    ) -> None:
        need(max_refs >= 1, "par.max_refs must be >= 1")
        self.of = build_sub(registry, of, "par.of")
        self.of_name = of if isinstance(of, str) else str(of.get("name"))
        self.ref_column, self.k, self.max_refs = ref_column, float(k), int(max_refs)

    def children(self) -> Iterator[RewardModule]:
        yield self.of

    def requires(self) -> Requirements:
        return needs(R.column(self.ref_column, "reference-reward column"))

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s, v in zip(group, scalars(self.of, group), strict=True):
            refs = _refs(s, self.ref_column, self.of_name)
            if v is None or not refs:
                out.append(RewardOutput(None))
            else:
                out.append(RewardOutput(par(v, refs, self.k, self.max_refs)))
        return out


class Ensemble(Composite):
    """Reward-model ensembles (Eisenstein et al. 2312.09244; Coste et al. ICLR 2024; TEXT/2ND).

    ``aggregate``: ``mean``, ``median``, ``mean_minus_std`` (mean - lam*std), ``worst_case`` (min, WCO),
    ``uwo`` (mean - lam*variance). ``lam`` (placeholder 1.0) and ``ddof`` (0 = population) UNCONFIRMED.
    Members must share a scale (standardise on a fixed calibration set, not per batch).
    """

    name = "ensemble"

    def __init__(
        self,
        registry: Registry,
        members: list[Spec],
        aggregate: Aggregate = "mean",
        lam: float = 1.0,
        ddof: int = 0,
    ) -> None:
        need(bool(members), "ensemble.members needs at least one module")
        need(aggregate in ("mean", "median", "mean_minus_std", "worst_case", "uwo"), "bad ensemble.aggregate")
        self.members = [build_sub(registry, m, "ensemble.members") for m in members]
        self.method, self.lam, self.ddof = aggregate, float(lam), int(ddof)

    def children(self) -> Iterator[RewardModule]:
        yield from self.members

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        cols = [scalars(m, group) for m in self.members]
        out = []
        for i in range(len(group)):
            vals = [float(c[i]) for c in cols if c[i] is not None]  # type: ignore[arg-type]
            out.append(RewardOutput(aggregate(vals, self.method, self.lam, self.ddof) if vals else None))
        return out


class CtrlU(Composite):
    """Ctrl-U-style uncertainty weighting (Zhang et al., ICLR 2025; 2ND): reward ``exp(-U) * r``.

    ``U`` from ``Sample.extras[uncertainty_key]`` when present, else the disagreement of ``members``
    (mean absolute difference to their mean; Ctrl-U uses L1/KL between two predictions). The paper's
    uncertainty-regularised loss ``L^c / exp(U) + lam * U`` trains a reward model whose U is learned; here U is
    an input, so only the weighting applies.
    """

    name = "ctrl_u"

    def __init__(
        self,
        registry: Registry,
        of: Spec = "column",
        members: list[Spec] | None = None,
        uncertainty_key: str = "uncertainty",
    ) -> None:
        self.of = build_sub(registry, of, "ctrl_u.of")
        self.members = [build_sub(registry, m, "ctrl_u.members") for m in members or []]
        self.key = uncertainty_key

    def children(self) -> Iterator[RewardModule]:
        yield self.of
        yield from self.members

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        base = scalars(self.of, group)
        cols = [scalars(m, group) for m in self.members]
        out = []
        for i, s in enumerate(group):
            u: Any = s.extras.get(self.key)
            if u is None:
                vals = [float(c[i]) for c in cols if c[i] is not None]  # type: ignore[arg-type]
                u = sum(abs(v - sum(vals) / len(vals)) for v in vals) / len(vals) if vals else 0.0
            v = base[i]
            w = ctrl_u_weight(float(u))
            out.append(
                RewardOutput(None if v is None else w * v, info={"uncertainty": float(u), "weight": w})
            )
        return out


class GroupNormalized(Composite):
    """Another module's values normalised within the group by an advantage estimator (``grpo`` with
    ``eps`` 1e-4 gives TRL's GDPO per-function z-score, section 0.1/18). None values count as 0."""

    name = "group_normalized"

    def __init__(
        self,
        registry: Registry,
        of: Spec = "exact_match",
        estimator: Literal["grpo", "dr_grpo", "rloo"] = "grpo",
        eps: float = 1e-4,
    ) -> None:
        need(
            estimator in ("grpo", "dr_grpo", "rloo"),
            "group_normalized.estimator must be grpo, dr_grpo or rloo",
        )
        self.of = build_sub(registry, of, "group_normalized.of")
        self.estimator, self.eps = estimator, float(eps)

    def children(self) -> Iterator[RewardModule]:
        yield self.of

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        vals = [float(v or 0.0) for v in scalars(self.of, group)]
        return [RewardOutput(a) for a in compute_advantages([vals], self.estimator, self.eps)[0]]


def paraphrase_question(question: str, rule: str) -> str:
    """A paraphrase of ``question`` by ``rule``: ``reverse`` reorders the terms of a chain of one
    commutative operator (``3+4=`` -> ``4+3=``; other questions are left as they are), any other string is
    a template with ``{question}``."""
    if rule == "reverse":
        m = re.fullmatch(r"\s*(\d+(?:([+*])\d+)+)\s*=\s*", question)
        if m is None or len(set(re.findall(r"[+*-]", m.group(1)))) != 1:
            return question
        op = m.group(2)
        return op.join(reversed(m.group(1).split(op))) + "="
    return rule.replace("{question}", question)


class CoReward(ScorerSlot):
    """Co-Reward (arXiv 2508.00410; CODE): cross-view majority-vote pseudo labels.

    Each sample's view comes from ``Sample.extras[view_key]`` (``original`` or ``paraphrase``; the group
    holds both views of one question). Original rollouts are rewarded against the majority answer of the
    paraphrase rollouts and vice versa; answers = last ``\\boxed{}`` content (``extract``: ``boxed``), the
    ``<answer>`` text (``answer_tag``) or the whole stripped completion (``text``), compared as exact strings;
    empty answers never vote and never match. Ties go to the first-seen answer.

    ``paraphrase`` (ours; the paper's paraphrases come from a separate LLM): when a group holds no
    paraphrase-view samples, the node's policy (bound scorer) samples ``samples`` rollouts (0 = group size)
    for ``paraphrase_question(prompt, paraphrase)`` (``reverse`` or a ``{question}`` template), and those vote
    for the original rollouts.
    """

    name = "co_reward"

    def __init__(
        self,
        view_key: str = "view",
        extract: Literal["boxed", "answer_tag", "text"] = "boxed",
        paraphrase: str | None = None,
        samples: int = 0,
    ) -> None:
        need(
            extract in ("boxed", "answer_tag", "text"), "co_reward.extract must be boxed, answer_tag or text"
        )
        need(
            paraphrase is None or paraphrase == "reverse" or "{question}" in str(paraphrase),
            "co_reward.paraphrase must be 'reverse' or a template containing {question}",
        )
        need(0 <= int(samples) <= 1024, "co_reward.samples must be in [0, 1024]")
        self.view_key, self.extract = view_key, extract
        self.paraphrase, self.samples = paraphrase, int(samples)

    def requires(self) -> Requirements:
        if self.paraphrase is None:  # both views must arrive in the group, marked by the view column
            return needs(R.column(self.view_key, "view column (original / paraphrase; or set paraphrase)"))
        return super().requires()

    def _text_answer(self, text: str) -> str:
        if self.extract == "boxed":
            return boxed_answer(text)
        from swarmrl.rewards.base import extract_answer

        if self.extract == "text":
            return extract_answer(text)
        return extract_answer(text) if "<answer>" in text else ""

    def _answer(self, s: Sample) -> str:
        return self._text_answer(s.completion)

    def _sampled_votes(self, group: Sequence[Sample]) -> dict[str, str]:
        """Majority answer of policy rollouts on each prompt's paraphrase."""
        scorer = self.resolve(group, self.name)
        prompts = sorted({s.prompt for s in group})
        n = self.samples or len(group)
        rollouts = scorer.sample([paraphrase_question(p, str(self.paraphrase)) for p in prompts], n)
        if len(rollouts) != len(prompts):
            raise RewardError(f"co_reward: scorer returned {len(rollouts)} sample lists for {len(prompts)}")
        return {
            p: majority_vote([self._text_answer(t) for t in r])
            for p, r in zip(prompts, rollouts, strict=True)
        }

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        views = [str(s.extras.get(self.view_key, "original")) for s in group]
        bad = set(views) - {"original", "paraphrase"}
        if bad:
            raise RewardError(
                f"co_reward: extras['{self.view_key}'] must be original or paraphrase, got {sorted(bad)}"
            )
        answers = [self._answer(s) for s in group]
        if self.paraphrase is not None and "paraphrase" not in views:
            labels = self._sampled_votes(group)
            return [
                RewardOutput(
                    1.0 if labels[s.prompt] and a == labels[s.prompt] else 0.0,
                    info={"pseudo_label": labels[s.prompt]},
                )
                for s, a in zip(group, answers, strict=True)
            ]
        vote = {
            "original": majority_vote([a for a, v in zip(answers, views, strict=True) if v == "paraphrase"]),
            "paraphrase": majority_vote([a for a, v in zip(answers, views, strict=True) if v == "original"]),
        }
        out = []
        for a, v in zip(answers, views, strict=True):
            label = vote[v]
            out.append(RewardOutput(1.0 if label and a == label else 0.0, info={"pseudo_label": label}))
        return out
