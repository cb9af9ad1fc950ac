"""Reward modules of the second batch of papers (issue 17): potential-based shaping, global and episodic
exploration bonuses, ArenaRL tournaments, P2S path faithfulness, SLATE truncated step sampling, OPRL online
implicit PRM and the TVM token value model. HERON is a combine mode (``combine: {mode: heron}``), the
recovering-rewards task scheduler is ``tasks.schedule``.

Modules that learn across rounds keep their state where the node checkpoints it: the exploration counts in
the module (``state_dict`` / ``load_state_dict``, collected by ``RewardPipeline.state_dict``), the OPRL PRM
and the TVM head in the trainer's scorer (``TrainerScorer.state_dict``). Groups of a single completion (the
node's greedy evaluation) are scored but never learned from.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from swarmrl.errors import RewardError
from swarmrl.rewards import requirements as R
from swarmrl.rewards.base import RewardModule, RewardOutput, Sample, extract_answer
from swarmrl.rewards.catalogue.common import Composite, Spec, build_sub, checked, need, scalars, steps_of
from swarmrl.rewards.literature import (
    combine_bonus,
    cumulative,
    episodic_bonus,
    gated_bonus,
    global_bonus,
    p2s_step_rewards,
    potential_shaping,
    preference_pairs,
    prefix_success_targets,
    round_robin,
    seeded_single_elimination,
    telescope,
    zscore,
)
from swarmrl.rewards.requirements import Requirements, needs
from swarmrl.rewards.scorer import OnlinePRMScorer, PolicyScorer, ScorerSlot, TokenScorer, ValueScorer
from swarmrl.rewards.segment import TOKEN_OFFSETS, locate, step_token_ends

if TYPE_CHECKING:
    from swarmrl.rewards.registry import Registry


def _outcomes(module: RewardModule, group: Sequence[Sample]) -> list[float]:
    return [float(v or 0.0) for v in scalars(module, group, 0.0)]


def _correct(s: Sample) -> bool:
    return extract_answer(s.completion) == s.answer.strip()


class _ScorerComposite(ScorerSlot, Composite):
    """A module that needs the policy and also has sub-modules (binds the scorer to both)."""

    def bind_scorer(self, scorer: PolicyScorer | None) -> None:
        ScorerSlot.bind_scorer(self, scorer)
        Composite.bind_scorer(self, scorer)


# --- potential-based shaping wrapper ----------------------------------------------------------------------


class PotentialShaping(Composite):
    """Policy-invariant wrapper for any dense module (Ng, Harada & Russell 1999; the PAV argument of Setlur et
    al. 2410.08146 and Robo-Dopamine's: a dense reward should be a difference of potentials):
    ``F_k = gamma * Phi(s_k) - Phi(s_{k-1})``, ``Phi(s_0) = phi0``, ``Phi(terminal) = 0``.

    ``Phi(s_k)`` comes from the wrapped module ``of``: its step (or token) reward at k (``potential: value``,
    e.g. a PRM's score of the prefix) or its running return (``return``). Every completion's shaped sum is
    ``-phi0`` (discounted with gamma), so the ranking of full trajectories by outcome is unchanged (TEXT:
    the theorem); gamma 1.0 and phi0 0.0 are our defaults (UNCONFIRMED). Use gamma 1 with the pipeline's
    undiscounted ``returns`` credit.
    """

    name = "potential_shaping"

    def __init__(
        self,
        registry: Registry,
        of: Spec = "step_match",
        gamma: float = 1.0,
        phi0: float = 0.0,
        potential: Literal["value", "return"] = "value",
    ) -> None:
        need(0.0 < float(gamma) <= 1.0, "potential_shaping.gamma must be in (0, 1]")
        need(potential in ("value", "return"), "potential_shaping.potential must be value or return")
        self.inner = build_sub(registry, of, "potential_shaping.of")
        self.gamma, self.phi0, self.potential = float(gamma), float(phi0), potential

    def children(self) -> Iterator[RewardModule]:
        yield self.inner

    def _shape(self, values: Sequence[float]) -> list[float]:
        phis = cumulative(values) if self.potential == "return" else [float(v) for v in values]
        return potential_shaping(phis, self.gamma, self.phi0)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for o in checked(self.inner.score_group(group), group, self.inner.name):
            steps = self._shape(o.step_rewards) if o.step_rewards else None
            tokens = self._shape(o.token_rewards) if o.token_rewards else None
            out.append(RewardOutput(None, step_rewards=steps, token_rewards=tokens))
        return out


# --- global and episodic exploration bonuses --------------------------------------------------------------


class ExploreBonus(Composite):
    """Count-based novelty bonuses (Henaff et al., "A Study of Global and Episodic Bonuses for Exploration in
    Contextual MDPs", ICML 2023, arXiv 2306.03236): the episode is a group (one question), the state the
    completion's extracted answer (``key: answer``) or its whole text (``completion``).

    ``b_e = 1 / sqrt(N_e(a))`` (count of a in the group), ``b_g = 1 / sqrt(1 + N_g(a))`` (count of a in the
    node's earlier rounds), combined by ``product`` (the paper's finding: the product of a global and an
    episodic bonus is the robust choice, TEXT), ``sum``, or one alone. The reward is
    ``outcome + beta * b`` under a gate so that the bonus can never lift a completion above a better outcome:
    ``zero_variance`` (only in groups whose outcomes are all equal) or ``capped`` (``beta`` shrunk below the
    group's smallest outcome gap). Counts-as-bonus forms and beta 0.1 are our choices (UNCONFIRMED); the
    counts are checkpointed with the node.
    """

    name = "explore_bonus"

    def __init__(
        self,
        registry: Registry,
        outcome: Spec = "exact_match",
        beta: float = 0.1,
        combine: Literal["product", "sum", "episodic", "global"] = "product",
        gate: Literal["zero_variance", "capped"] = "zero_variance",
        cap: float = 0.5,
        key: Literal["answer", "completion"] = "answer",
    ) -> None:
        need(combine in ("product", "sum", "episodic", "global"), "explore_bonus.combine is invalid")
        need(gate in ("zero_variance", "capped"), "explore_bonus.gate must be zero_variance or capped")
        need(key in ("answer", "completion"), "explore_bonus.key must be answer or completion")
        need(0.0 <= float(beta) <= 10.0, "explore_bonus.beta must be in [0, 10]")
        need(0.0 < float(cap) < 1.0, "explore_bonus.cap must be in (0, 1)")
        self.outcome = build_sub(registry, outcome, "explore_bonus.outcome")
        self.beta, self.combine, self.gate, self.cap, self.key = float(beta), combine, gate, float(cap), key
        self.history: Counter[str] = Counter()

    def children(self) -> Iterator[RewardModule]:
        yield self.outcome

    def _key(self, s: Sample) -> str:
        return extract_answer(s.completion) if self.key == "answer" else s.completion

    def score_batch(self, groups: Sequence[Sequence[Sample]]) -> list[list[RewardOutput]]:
        out, seen = [], Counter[str]()
        for group in groups:
            keys = [self._key(s) for s in group]
            bonus = combine_bonus(episodic_bonus(keys), global_bonus(keys, self.history), self.combine)
            values = gated_bonus(_outcomes(self.outcome, group), bonus, self.beta, self.gate, self.cap)
            out.append([RewardOutput(v, info={"bonus": b}) for v, b in zip(values, bonus, strict=True)])
            if len(group) > 1:
                seen.update(keys)
        self.history.update(seen)  # counts of earlier rounds only: the whole batch sees the same history
        return out

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return self.score_batch([group])[0]

    def state_dict(self) -> dict[str, Any]:
        return {"history": dict(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = Counter({str(k): int(v) for k, v in dict(state.get("history") or {}).items()})


# --- ArenaRL ----------------------------------------------------------------------------------------------


def _number(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class Arena(Composite):
    """Tournament-based relative ranking inside a group (ArenaRL, Zhang et al., arXiv 2601.06487): pairwise
    matches replace pointwise scores whose values are squeezed together; ``tournament``:
    ``single_elimination`` (seeded, n - 1 matches, the paper's O(N) scheme, TEXT) or ``round_robin`` (all
    n(n-1)/2 pairs, the paper's reference). Reward: rank position mapped linearly to [0, 1] (elimination) or
    the win-rate (round robin); the mapping is UNCONFIRMED.

    ``judge``: ``score`` compares the pointwise module ``of`` with a tie ``margin``; ``numeric`` is a
    verifiable two-level rubric of ours for numeric answers (a correct answer beats a wrong one; between wrong
    answers the one numerically closer to the gold answer wins; unparseable loses). Seeds: ``of``'s scores,
    best first (the paper seeds against an anchor answer; UNCONFIRMED here).
    """

    name = "arena"

    def __init__(
        self,
        registry: Registry,
        of: Spec = "exact_match",
        judge: Literal["score", "numeric"] = "score",
        tournament: Literal["single_elimination", "round_robin"] = "single_elimination",
        margin: float = 0.0,
    ) -> None:
        need(judge in ("score", "numeric"), "arena.judge must be score or numeric")
        need(tournament in ("single_elimination", "round_robin"), "arena.tournament is invalid")
        need(float(margin) >= 0.0, "arena.margin must be >= 0")
        self.of = build_sub(registry, of, "arena.of")
        self.judge, self.tournament, self.margin = judge, tournament, float(margin)

    def children(self) -> Iterator[RewardModule]:
        yield self.of

    def _judge(self, group: Sequence[Sample], scores: Sequence[float]) -> Any:
        def by_score(i: int, j: int) -> float:
            d = scores[i] - scores[j]
            return 0.5 if abs(d) <= self.margin else (1.0 if d > 0 else 0.0)

        def numeric(i: int, j: int) -> float:
            ci, cj = _correct(group[i]), _correct(group[j])
            if ci != cj:
                return 1.0 if ci else 0.0
            if ci:
                return 0.5
            gold = _number(group[i].answer)
            a, b = _number(extract_answer(group[i].completion)), _number(extract_answer(group[j].completion))
            da = math.inf if a is None or gold is None else abs(a - gold)
            db = math.inf if b is None or gold is None else abs(b - gold)
            return 0.5 if da == db else (1.0 if da < db else 0.0)

        return by_score if self.judge == "score" else numeric

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        scores = _outcomes(self.of, group)
        judge = self._judge(group, scores)
        if self.tournament == "round_robin":
            ranks, made = round_robin(len(group), judge)
        else:
            seeds = sorted(range(len(group)), key=lambda i: (-scores[i], i))
            ranks, made = seeded_single_elimination(seeds, judge)
        return [RewardOutput(r, info={"matches": made}) for r in ranks]


# --- P2S ------------------------------------------------------------------------------------------------


class P2S(ScorerSlot):
    """Path Faithfulness Reward (P2S, Zhong et al., arXiv 2601.20649): for each reasoning step, the
    conditional probability of the reference chain's remainder given the completion's prefix (TEXT).

    ``PFR_k = exp(mean log pi(ref[k:] | prompt, completion steps 1..k))`` for k = 0 .. H-1 (``score: prob``;
    ``mean_logp`` keeps the log), with ``ref`` the gold steps of the task (``reference: gold_steps``), a
    verified correct completion of the same group (``group_correct``; P2S synthesises and filters its own
    gold-CoT, TEXT) or the gold steps when present, else a correct completion (``auto``). Step rewards
    ``delta`` (``PFR_k - PFR_{k-1}``, default: progress cannot be farmed by writing more steps) or
    ``absolute`` (``PFR_k``); the last step gets 0 (the outcome judges it). Form, normalisation and the
    joining of steps by ``sep`` are UNCONFIRMED. None when no reference exists.
    """

    name = "p2s"

    def __init__(
        self,
        reference: Literal["auto", "gold_steps", "group_correct"] = "auto",
        form: Literal["delta", "absolute"] = "delta",
        score: Literal["prob", "mean_logp"] = "prob",
        sep: str = ";",
    ) -> None:
        need(reference in ("auto", "gold_steps", "group_correct"), "p2s.reference is invalid")
        need(form in ("delta", "absolute"), "p2s.form must be delta or absolute")
        need(score in ("prob", "mean_logp"), "p2s.score must be prob or mean_logp")
        self.reference, self.form, self.kind, self.sep = reference, form, score, sep

    def requires(self) -> Requirements:
        own = needs(R.gold_steps(), R.steps()) if self.reference == "gold_steps" else needs(R.steps())
        return super().requires() | own

    def _reference(self, group: Sequence[Sample]) -> list[str] | None:
        gold = [g.strip() for g in group[0].gold_steps] if group else []
        if self.reference in ("auto", "gold_steps") and gold:
            return gold
        if self.reference in ("auto", "group_correct"):
            for s in group:
                if _correct(s):
                    return [x.strip() for x in steps_of(s)]
        return None

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        ref = self._reference(group)
        if not ref:
            return [RewardOutput(None) for _ in group]
        plan: list[tuple[int, str, str]] = []  # (completion, prefix, reference remainder)
        for i, s in enumerate(group):
            spans = locate(s.completion, steps_of(s))
            for k in range(len(spans)):
                prefix = "" if k == 0 else s.completion[: spans[k].start]
                plan.append((i, prefix, self.sep.join(ref[k:])))
        asks = [item for item in plan if item[2]]  # the same tuples: looked up by identity below
        got = (
            self.resolve(group, self.name).logprobs(
                [group[i].prompt for i, _, _ in asks], [r for _, _, r in asks], [p for _, p, _ in asks]
            )
            if asks
            else []
        )
        by_ask = {id(a): row for a, row in zip(asks, got, strict=True)}
        values: list[list[float]] = [[] for _ in group]
        for item in plan:
            row = by_ask.get(id(item))
            if not row:
                values[item[0]].append(0.0)
                continue
            mean = sum(row) / len(row)
            values[item[0]].append(math.exp(mean) if self.kind == "prob" else mean)
        return [
            RewardOutput(None, step_rewards=p2s_step_rewards(v, self.form) or None, info={"pfr": v})
            for v in values
        ]


# --- SLATE ----------------------------------------------------------------------------------------------


class Slate(ScorerSlot):
    """Truncated step-level sampling (SLATE, Samarinas et al., arXiv 2602.23440): ``siblings`` continuations
    sampled from the shared prefix before step k, truncated after one step (TEXT), each scored by a
    verifiable step reward (here: equals gold step k, where the paper uses an LLM judge), and the step's
    advantage over its siblings ``A_k = r(step_k) - mean_j r(sibling_j)`` (leave-self-out mean, UNCONFIRMED).
    Emitted as ``A_k - A_{k+1}`` so the default ``returns`` credit gives every token of step k exactly
    ``alpha * A_k``. Needs gold steps (the ``multistep`` task); prefixes shared inside a round are sampled
    once. Steps past the gold chain get 0.
    """

    name = "slate"

    def __init__(self, siblings: int = 4, alpha: float = 1.0, sep: str = ";") -> None:
        need(1 <= int(siblings) <= 64, "slate.siblings must be in [1, 64]")
        need(bool(sep), "slate.sep must not be empty")
        self.siblings, self.alpha, self.sep = int(siblings), float(alpha), sep

    def requires(self) -> Requirements:
        return super().requires() | needs(R.gold_steps(), R.steps())

    def _first_step(self, text: str) -> str:
        return extract_answer(text.split(self.sep, 1)[0]).strip()

    def score_batch(self, groups: Sequence[Sequence[Sample]]) -> list[list[RewardOutput]]:
        need_prefix: dict[tuple[str, str], int] = {}
        layout: list[list[list[tuple[tuple[str, str], float, str]]]] = []
        for group in groups:
            rows = []
            for s in group:
                gold = [g.strip() for g in s.gold_steps]
                spans = locate(s.completion, steps_of(s)) if gold else []
                items = []
                for k, sp in enumerate(spans):
                    if k >= len(gold):
                        break
                    key = (s.prompt, "" if k == 0 else s.completion[: sp.start])
                    need_prefix.setdefault(key, len(need_prefix))
                    items.append((key, 1.0 if sp.text == gold[k] else 0.0, gold[k]))
                rows.append(items)
            layout.append(rows)
        keys = sorted(need_prefix, key=need_prefix.__getitem__)
        sampled: dict[tuple[str, str], list[str]] = {}
        if keys:
            scorer = self.resolve([s for g in groups for s in g], self.name)
            conts = scorer.sample([k[0] for k in keys], self.siblings, [k[1] for k in keys])
            sampled = {k: [self._first_step(c) for c in cs] for k, cs in zip(keys, conts, strict=True)}
        out = []
        for group, rows in zip(groups, layout, strict=True):
            res = []
            for s, items in zip(group, rows, strict=True):
                if not s.gold_steps:
                    res.append(RewardOutput(None))
                    continue
                adv = []
                for key, own, gold_k in items:
                    sibs = sampled.get(key, [])
                    base = sum(1.0 for x in sibs if x == gold_k) / len(sibs) if sibs else own
                    adv.append(self.alpha * (own - base))
                n_steps = len(steps_of(s))
                adv += [0.0] * (n_steps - len(adv))
                res.append(RewardOutput(None, step_rewards=telescope(adv) or None, info={"advantages": adv}))
            out.append(res)
        return out

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return self.score_batch([group])[0]


# --- token-level helpers for OPRL and TVM ------------------------------------------------------------------


def _step_of_token(s: Sample, n_tok: int) -> list[int]:
    """Index of the step each completion token belongs to (tokens after the last step: the last step)."""
    steps = steps_of(s)
    if not steps or n_tok == 0:
        return []
    ends = step_token_ends(s.completion, steps, n_tok, s.extras.get(TOKEN_OFFSETS))
    out, k = [], 0
    for t in range(n_tok):
        while k < len(ends) - 1 and t > ends[k]:
            k += 1
        out.append(k)
    return out


class Oprl(_ScorerComposite):
    """Online Process Reward Learning (OPRL, Liu et al., arXiv 2509.19199): an implicit PRM ``pi_phi`` trained
    online, alternating with the policy, by the trajectory DPO loss on outcome-preference pairs of a group
    ``-log sigma(beta * (sum log pi_phi/pi_old (tau+) - sum log pi_phi/pi_old (tau-)))`` (TEXT); step reward
    ``r_k = beta * sum_{t in step k} log pi_phi(y_t) / pi_old(y_t)`` (TEXT), ``pi_old`` = the policy that
    generated (the current one when the group is scored); step advantages = the group's step rewards
    z-scored together, combined with the episode advantage as ``A + alpha * A_step`` on the tokens of each
    step (TEXT: combined; the z-score and the additive mix are UNCONFIRMED). ``beta`` 0.05, ``lr`` 1e-5,
    ``alpha`` 1.0, ``max_pairs`` 16 per group are UNCONFIRMED. The PRM starts as a copy of the policy, lives
    in the trainer (one more model in memory), is updated once per round after scoring, and is checkpointed.
    """

    name = "oprl"

    def __init__(
        self,
        registry: Registry,
        outcome: Spec = "exact_match",
        beta: float = 0.05,
        lr: float = 1e-5,
        alpha: float = 1.0,
        max_pairs: int = 16,
        key: str = "oprl",
    ) -> None:
        need(float(beta) > 0 and float(lr) > 0, "oprl.beta and oprl.lr must be > 0")
        need(1 <= int(max_pairs) <= 4096, "oprl.max_pairs must be in [1, 4096]")
        self.outcome = build_sub(registry, outcome, "oprl.outcome")
        self.beta, self.lr, self.alpha, self.max_pairs, self.key = (
            float(beta),
            float(lr),
            float(alpha),
            int(max_pairs),
            key,
        )

    def children(self) -> Iterator[RewardModule]:
        yield self.outcome

    def _scorer(self, groups: Sequence[Sequence[Sample]]) -> Any:
        scorer = self.resolve([s for g in groups for s in g], self.name)
        if not isinstance(scorer, OnlinePRMScorer) or not isinstance(scorer, TokenScorer):
            raise RewardError("oprl needs the trainer's scorer (online PRM and token log-probs)")
        return scorer

    def score_batch(self, groups: Sequence[Sequence[Sample]]) -> list[list[RewardOutput]]:
        scorer = self._scorer(groups)
        out, pairs = [], []
        for group in groups:
            prompts, ids = [s.prompt for s in group], [s.completion_ids for s in group]
            prm = scorer.prm_token_logprobs(self.key, prompts, ids)
            old = scorer.token_logprobs(prompts, ids)
            per_step: list[list[float]] = []
            for s, a, b in zip(group, prm, old, strict=True):
                owner = _step_of_token(s, len(a))
                sums = [0.0] * (max(owner) + 1 if owner else 0)
                for t, k in enumerate(owner):
                    sums[k] += self.beta * (a[t] - b[t])
                per_step.append(sums)
            flat = zscore([x for row in per_step for x in row])
            res, k = [], 0
            for row in per_step:
                adv = [self.alpha * z for z in flat[k : k + len(row)]]
                k += len(row)
                res.append(RewardOutput(None, step_rewards=telescope(adv) or None, info={"implicit": row}))
            out.append(res)
            if len(group) > 1:
                outcomes = _outcomes(self.outcome, group)
                pairs += [
                    (group[a].prompt, group[a].completion_ids, group[b].completion_ids)
                    for a, b in preference_pairs(outcomes, self.max_pairs)
                ]
        if pairs:
            scorer.prm_dpo_step(self.key, pairs, self.beta, self.lr)
        return out

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return self.score_batch([group])[0]


class Tvm(_ScorerComposite):
    """Token-supervised value model (TVM, Lee et al., arXiv 2407.12863): ``V(s_t)`` = probability of reaching
    a correct answer from the prefix before token t, trained on per-token targets (TEXT); the target of a
    token is the success rate of the group's completions sharing its prefix (TEXT: shared-prefix empirical
    targets; exact form UNCONFIRMED). Used as a potential-based dense reward
    ``F_t = coef * (V(s_{t+1}) - V(s_t))`` with ``V(terminal) = 0``: under the default ``returns`` credit
    each token then gets ``A - coef * V(s_t)``, i.e. a token baseline (our use; TVM itself guides search).
    The value head (a linear head on the policy's hidden states; UNCONFIRMED) lives in the trainer, is fitted
    once per round after scoring (``lr`` 1e-3) and checkpointed. Cheaper than ``progress_mc``: no sampling.
    """

    name = "tvm"

    def __init__(
        self,
        registry: Registry,
        outcome: Spec = "exact_match",
        coef: float = 1.0,
        lr: float = 1e-3,
        key: str = "tvm",
    ) -> None:
        need(float(lr) > 0, "tvm.lr must be > 0")
        self.outcome = build_sub(registry, outcome, "tvm.outcome")
        self.coef, self.lr, self.key = float(coef), float(lr), key

    def children(self) -> Iterator[RewardModule]:
        yield self.outcome

    def score_batch(self, groups: Sequence[Sequence[Sample]]) -> list[list[RewardOutput]]:
        scorer = self.resolve([s for g in groups for s in g], self.name)
        if not isinstance(scorer, ValueScorer):
            raise RewardError("tvm needs the trainer's scorer (token value head)")
        out = []
        fit_p: list[str] = []
        fit_ids: list[list[int]] = []
        fit_t: list[list[float]] = []
        for group in groups:
            prompts, ids = [s.prompt for s in group], [list(s.completion_ids) for s in group]
            values = scorer.token_values(self.key, prompts, ids)
            res = []
            for v in values:
                if not v:
                    res.append(RewardOutput(None))
                    continue
                shaped = potential_shaping([*v[1:], 0.0], 1.0, v[0])
                res.append(
                    RewardOutput(None, token_rewards=[self.coef * f for f in shaped], info={"v0": v[0]})
                )
            out.append(res)
            if len(group) > 1:
                targets = prefix_success_targets(
                    ids, [1.0 if o > 0.5 else 0.0 for o in _outcomes(self.outcome, group)]
                )
                fit_p += prompts
                fit_ids += ids
                fit_t += targets
        if fit_p:
            scorer.fit_values(self.key, fit_p, fit_ids, fit_t, self.lr)
        return out

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return self.score_batch([group])[0]
