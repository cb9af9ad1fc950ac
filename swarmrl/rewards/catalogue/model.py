"""Modules that need the policy (a :class:`~swarmrl.rewards.scorer.PolicyScorer` bound by the trainer):
likelihood rewards (log-prob, VeriFree, RLPR), IGPO information gain, PRIME implicit token rewards and
Monte-Carlo progress (PAV / MRT). SAPO: always the receiving node's model, never the sender's log-probs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Literal

from swarmrl.errors import RewardError
from swarmrl.rewards import requirements as R
from swarmrl.rewards.base import RewardModule, RewardOutput, Sample, extract_answer
from swarmrl.rewards.catalogue.common import Composite, Spec, build_sub, float_list, need, scalars, steps_of
from swarmrl.rewards.requirements import Requirements, needs
from swarmrl.rewards.scorer import ImplicitPRMScorer, PolicyScorer, ScorerSlot, TokenScorer
from swarmrl.rewards.segment import locate
from swarmrl.rewards.shaping import (
    igpo_turn_rewards,
    mc_value,
    prime_batch_norm,
    prime_ce_loss,
    prime_rloo_returns,
    prime_token_rewards,
    progress_rewards,
)
from swarmrl.rewards.text import rlpr_format

if TYPE_CHECKING:
    from swarmrl.rewards.registry import Registry

NEG_INF = -math.inf
RlprScore = Literal["mean_prob", "mean_logp", "prob", "geo_mean_prob"]


# --- pure likelihood math (section 5) ---------------------------------------------------------------------


def sequence_logprob(logps: Sequence[float]) -> float:
    """Summed log-prob of the reference answer (Kwiatkowski et al.); stays finite where probabilities underflow."""
    return float(sum(logps))


def verifree_reward(
    logps: Sequence[float] | None, mode: Literal["logp", "p"] = "logp", scale: float = 1.0
) -> float:
    """VeriFree: ``sum l`` (``logp``) or ``exp(sum l)`` (``p``) times ``scale``; a missing answer is -inf / 0."""
    total = NEG_INF if logps is None else sequence_logprob(logps)
    return scale * (total if mode == "logp" else math.exp(total))


def rlpr_score(logps: Sequence[float], kind: RlprScore = "mean_prob") -> float:
    """RLPR answer score: mean token probability (default), mean log-prob, exp(sum), or exp(mean)."""
    if not logps:
        raise RewardError("RLPR needs at least one answer token")
    if kind == "mean_prob":
        return sum(math.exp(x) for x in logps) / len(logps)
    if kind == "mean_logp":
        return sum(logps) / len(logps)
    if kind == "prob":
        return math.exp(sum(logps))
    if kind == "geo_mean_prob":
        return math.exp(sum(logps) / len(logps))
    raise RewardError(f"unknown RLPR score {kind!r}")


def rlpr_reward(
    score_b: float,
    score_a: float,
    fmt: float,
    format_coefficient: float = 0.1,
    shaping: Literal["threshold_0", "none"] = "threshold_0",
) -> float:
    """``R = (1 - c) * shaping(scoreB - scoreA) + c * format``; ``c == -1``: ``R = delta if format == 1 else -1``."""
    delta = score_b - score_a
    if shaping == "threshold_0":
        delta = 0.0 if delta < 0 else delta
    if format_coefficient == -1:
        return delta if fmt == 1.0 else -1.0
    return (1.0 - format_coefficient) * delta + format_coefficient * fmt


def token_f1(predicted: str, gold: str) -> float:
    """Bag-of-words F1 on lower-cased whitespace tokens (QA F1)."""
    p, g = predicted.lower().split(), gold.lower().split()
    if not p or not g:
        return float(p == g)
    common = 0
    pool = list(g)
    for tok in p:
        if tok in pool:
            pool.remove(tok)
            common += 1
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


# --- modules ---------------------------------------------------------------------------------------------


class _Likelihood(ScorerSlot):
    """Shared: the reasoning is the completion text before ``split_marker``; the reference answer follows
    ``reasoning + answer_prefix``. ``require_marker``: no marker -> answer missing (-inf, VeriFree)."""

    name = "likelihood"

    def __init__(
        self, split_marker: str = "<answer>", answer_prefix: str = "<answer>", require_marker: bool = False
    ):
        self.split_marker, self.answer_prefix, self.require_marker = (
            split_marker,
            answer_prefix,
            bool(require_marker),
        )

    def reasoning(self, s: Sample) -> str | None:
        at = s.completion.find(self.split_marker) if self.split_marker else -1
        if at < 0:
            return None if self.require_marker else s.completion
        return s.completion[:at]

    def answer_logprobs(self, group: Sequence[Sample]) -> list[list[float] | None]:
        scorer = self.resolve(group, self.name)
        idx, prompts, prefixes, answers = [], [], [], []
        for i, s in enumerate(group):
            r = self.reasoning(s)
            if r is not None:
                idx.append(i)
                prompts.append(s.prompt)
                prefixes.append(r + self.answer_prefix)
                answers.append(s.answer)
        out: list[list[float] | None] = [None] * len(group)
        if idx:
            got = scorer.logprobs(prompts, answers, prefixes)
            if len(got) != len(idx):
                raise RewardError(f"{self.name}: scorer returned {len(got)} rows for {len(idx)} requests")
            for i, row in zip(idx, got, strict=True):
                out[i] = [float(x) for x in row]
        return out


class LogprobAnswer(_Likelihood):
    """Log-likelihood of the reference answer (Kwiatkowski et al., arXiv 2602.03979; TEXT):
    ``sum_k log pi(a*_k | p, z)``. ``normalize``: ``sum`` (paper's formula) or ``mean`` (per token;
    whether the paper normalises is UNCONFIRMED). Answer missing (``require_marker``) -> None."""

    name = "logprob_answer"

    def __init__(self, normalize: Literal["sum", "mean"] = "sum", **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        need(normalize in ("sum", "mean"), "logprob_answer.normalize must be sum or mean")
        self.normalize = normalize

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for row in self.answer_logprobs(group):
            if row is None or not row:
                out.append(RewardOutput(None))
            else:
                total = sequence_logprob(row)
                out.append(RewardOutput(total / len(row) if self.normalize == "mean" else total))
        return out


class VeriFree(_Likelihood):
    """VeriFree reward (sail-sg/VeriFree; CODE): ``sum l`` (``mode`` logp, code default) or ``exp(sum l)``
    (``p``, run.sh), times ``reward_scale``; answer missing -> -inf / 0 (``require_marker`` default True,
    marker ``</think>``). The extra answer-likelihood loss term needs a trainer hook (not a reward)."""

    name = "verifree"

    def __init__(
        self,
        mode: Literal["logp", "p"] = "logp",
        reward_scale: float = 1.0,
        split_marker: str = "</think>",
        answer_prefix: str = "</think>\n<answer>",
        require_marker: bool = True,
    ) -> None:
        super().__init__(split_marker, answer_prefix, require_marker)
        need(mode in ("logp", "p"), "verifree.mode must be logp or p")
        self.mode, self.scale = mode, float(reward_scale)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return [
            RewardOutput(verifree_reward(row, self.mode, self.scale)) for row in self.answer_logprobs(group)
        ]


class Rlpr(_Likelihood):
    """RLPR (OpenBMB/RLPR; CODE): ``(1 - c) * max(0, scoreB - scoreA) + c * format`` with ``scoreB`` the mean
    token probability of the reference answer after the reasoning, ``scoreA`` the same without reasoning
    (computed once per prompt), ``c`` = ``format_coefficient`` 0.1, RLPR R1 format. ``score``: mean_prob
    (default), mean_logp, prob, geo_mean_prob."""

    name = "rlpr"

    def __init__(
        self,
        score: RlprScore = "mean_prob",
        shaping: Literal["threshold_0", "none"] = "threshold_0",
        format_coefficient: float = 0.1,
        split_marker: str = "<answer>",
        answer_prefix: str = "<answer>",
    ) -> None:
        super().__init__(split_marker, answer_prefix, False)
        self.kind, self.shaping, self.c = score, shaping, float(format_coefficient)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        rows = self.answer_logprobs(group)
        scorer = self.resolve(group, self.name)
        base: dict[tuple[str, str], float] = {}
        keys = sorted({(s.prompt, s.answer) for s in group})
        got = scorer.logprobs([k[0] for k in keys], [k[1] for k in keys], [self.answer_prefix] * len(keys))
        for k, base_row in zip(keys, got, strict=True):
            base[k] = rlpr_score(base_row, self.kind)
        out = []
        for s, row in zip(group, rows, strict=True):
            b = rlpr_score(row, self.kind) if row else 0.0
            out.append(
                RewardOutput(
                    rlpr_reward(
                        b, base[(s.prompt, s.answer)], rlpr_format(s.completion), self.c, self.shaping
                    )
                )
            )
        return out


class Igpo(ScorerSlot):
    """IGPO information-gain turn rewards (GuoqingWang1/IGPO; CODE). Turns = the pipeline's steps.

    ``P_t`` = geometric-mean probability of the gold answer after turn t's context plus the pseudo
    continuation (template-specific; the default is the repo's Qwen string); ``IG_t = P_t - P_{t-1}`` on
    non-final turns, ``alpha * F1(answer, gold)`` on the final turn (alpha 1.0). Dense only; use pipeline
    ``credit: {mode: returns, baseline: position_mean}`` for the repo's advantage.
    """

    name = "igpo"

    def __init__(
        self,
        pseudo_prefix: str = "\nNow there's enough information to answer\n</think>\n<answer>\n",
        alpha: float = 1.0,
    ) -> None:
        self.pseudo_prefix, self.alpha = pseudo_prefix, float(alpha)

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        scorer = self.resolve(group, self.name)
        plan: list[tuple[int, str]] = []
        for i, s in enumerate(group):
            spans = locate(s.completion, steps_of(s))
            if not spans:  # no turns (e.g. an empty completion): no turn rewards
                continue
            ends = [0] + [sp.end for sp in spans[:-1]]
            plan += [(i, s.completion[:e]) for e in ends]
        got = scorer.logprobs(
            [group[i].prompt for i, _ in plan],
            [group[i].answer for i, _ in plan],
            [ctx + self.pseudo_prefix for _, ctx in plan],
        )
        probs: list[list[float]] = [[] for _ in group]
        for (i, _), row in zip(plan, got, strict=True):
            probs[i].append(math.exp(sum(row) / len(row)) if row else 0.0)
        out = []
        for s, p in zip(group, probs, strict=True):
            if not p:
                out.append(RewardOutput(None, step_rewards=[]))
                continue
            f1 = token_f1(extract_answer(s.completion), s.answer)
            out.append(RewardOutput(None, step_rewards=igpo_turn_rewards(p, f1, self.alpha), info={"P": p}))
        return out


class Prime(ScorerSlot, Composite):
    """PRIME (Cui et al., arXiv 2502.01456; PRIME-RL/PRIME verl recipe, CODE): implicit process rewards
    ``r_t = beta * (log pi_phi(y_t) - log pi_ref(y_t))`` per completion token (``beta`` 0.05), then ``norm``
    ``batch_norm`` (recipe: divide by the batch max |return|) or ``none``; ``drop_last`` zeroes the last token
    (verl recipe; the original repo keeps it).

    ``prm`` -- where ``pi_phi`` comes from:

    * ``online`` (default, the paper): a separate implicit PRM initialised from the policy (held by the
      trainer's scorer under ``key``, checkpointed with the node), ``pi_ref`` the frozen starting policy. Each
      round it takes one optimiser step (``lr``; paper 1e-6) of the cross-entropy loss on the outcome labels
      ``y = 1[outcome > 0.5]`` of the round's groups (``outcome``: exact_match),
      ``BCE(sigmoid(beta * sum_t log pi_phi/pi_ref), y)``. ``update``: ``before`` (update, then score with
      the updated PRM; the recipe's default, UNCONFIRMED) or ``after`` (score, then update). Each sample's
      ``info['prm_ce']`` is that loss on it at scoring time (``shaping.prime_ce_loss``).
    * ``policy``: the current policy is the PRM (no separate model, no update: not the paper's method).
    * ``columns``: precomputed log-probs in ``Sample.extras[prm_key]`` / ``[ref_key]``.

    ``advantage``: ``rloo`` (default, the paper) turns the implicit rewards and the outcome into PRIME's
    advantage (``shaping.prime_rloo_returns``: leave-one-out baselines per source, weighted ``dpo_coef`` /
    ``gt_coef`` 5 / 5 as in the recipe, reverse cumulative returns), whitened over the batch's tokens
    (recipe), emitted as token rewards ``A_t - A_{t+1}`` so that the pipeline's default ``returns`` credit
    gives token t exactly ``A_t``: use ``prime`` as the only training module (the outcome is inside it).
    ``dense``: the token rewards go to the pipeline as they are (add an outcome module beside it). Groups of
    one completion (greedy evaluation) are scored but never train the PRM. ``accuracy_filter`` (paper's
    online prompt filter, [0.2, 0.8]; ``null`` turns it off): a group whose outcome accuracy lies outside the
    range trains neither the PRM nor the policy (zero advantage). Without it, all-wrong groups carry only the
    implicit term, and its per-token leave-one-out baseline pays for length (measured: the tiny model collapses
    to maximum-length garbage).
    """

    name = "prime"
    needs_reference = True

    def __init__(
        self,
        registry: Registry,
        beta: float = 0.05,
        norm: Literal["batch_norm", "none"] = "batch_norm",
        drop_last: bool = False,
        prm: Literal["online", "policy", "columns"] = "online",
        advantage: Literal["rloo", "dense"] = "rloo",
        outcome: Spec = "exact_match",
        lr: float = 1e-6,
        update: Literal["before", "after"] = "before",
        dpo_coef: float = 5.0,
        gt_coef: float = 5.0,
        accuracy_filter: list[float] | None = None,
        key: str = "prime",
        prm_key: str = "prm_logprobs",
        ref_key: str = "ref_logprobs",
    ) -> None:
        need(norm in ("batch_norm", "none"), "prime.norm must be batch_norm or none")
        need(prm in ("online", "policy", "columns"), "prime.prm must be online, policy or columns")
        need(advantage in ("rloo", "dense"), "prime.advantage must be rloo or dense")
        need(update in ("before", "after"), "prime.update must be before or after")
        need(float(beta) > 0 and float(lr) > 0, "prime.beta and prime.lr must be > 0")
        self.beta, self.norm, self.drop_last = float(beta), norm, bool(drop_last)
        self.prm, self.advantage, self.update, self.lr = prm, advantage, update, float(lr)
        self.dpo_coef, self.gt_coef = float(dpo_coef), float(gt_coef)
        band = [0.2, 0.8] if accuracy_filter is None else list(accuracy_filter)
        need(
            band == [] or (len(band) == 2 and 0.0 <= float(band[0]) <= float(band[1]) <= 1.0),
            "prime.accuracy_filter must be [low, high] within [0, 1], or [] for no filter",
        )
        self.band = (float(band[0]), float(band[1])) if band else (0.0, 1.0)
        self.outcome = build_sub(registry, outcome, "prime.outcome")
        self.key, self.prm_key, self.ref_key = key, prm_key, ref_key
        self.needs_reference = prm != "columns"

    def children(self) -> Iterator[RewardModule]:
        yield self.outcome

    def bind_scorer(self, scorer: PolicyScorer | None) -> None:
        ScorerSlot.bind_scorer(self, scorer)
        Composite.bind_scorer(self, scorer)

    def requires(self) -> Requirements:
        if self.prm == "columns":
            return needs(R.column(self.prm_key, "PRM log-prob column"), R.column(self.ref_key, "column"))
        return super().requires()

    def _online(self, groups: Sequence[Sequence[Sample]]) -> ImplicitPRMScorer:
        scorer = self.resolve([s for g in groups for s in g], self.name)
        if not isinstance(scorer, ImplicitPRMScorer) or not isinstance(scorer, TokenScorer):
            raise RewardError(
                "prime with prm: online needs the trainer's scorer (implicit PRM, token log-probs)"
            )
        return scorer

    def _labels(self, group: Sequence[Sample]) -> list[float]:
        return [1.0 if (v or 0.0) > 0.5 else 0.0 for v in scalars(self.outcome, group, 0.0)]

    def _kept(self, labels: Sequence[float]) -> bool:
        """A group PRIME learns from: more than one completion, accuracy within the filter band."""
        return len(labels) > 1 and self.band[0] <= sum(labels) / len(labels) <= self.band[1]

    def _train(
        self, scorer: ImplicitPRMScorer, groups: Sequence[Sequence[Sample]], labels: list[list[float]]
    ) -> None:
        learn = [k for k, g in enumerate(groups) if self._kept(labels[k])]
        if not learn:
            return
        scorer.prm_ce_step(
            self.key,
            [s.prompt for k in learn for s in groups[k]],
            [s.completion_ids for k in learn for s in groups[k]],
            [y for k in learn for y in labels[k]],
            self.beta,
            self.lr,
        )

    def _logprobs(self, group: Sequence[Sample]) -> tuple[list[list[float]], list[list[float]]]:
        if self.prm == "columns":
            prm = [float_list(s.extras.get(self.prm_key), self.prm_key) for s in group]
            ref = [float_list(s.extras.get(self.ref_key), self.ref_key) for s in group]
            return prm, ref
        scorer: PolicyScorer = self.resolve(group, self.name)
        prompts = [s.prompt for s in group]
        if isinstance(scorer, TokenScorer) and all(s.completion_ids for s in group):
            ids = [s.completion_ids for s in group]
            ref = scorer.token_logprobs(prompts, ids, reference=True)
            if self.prm == "online":
                return self._online([group]).prm_token_logprobs(self.key, prompts, ids), ref
            return scorer.token_logprobs(prompts, ids), ref
        if self.prm == "online":
            raise RewardError("prime with prm: online needs token ids and the trainer's scorer")
        comps = [s.completion for s in group]
        return scorer.logprobs(prompts, comps), scorer.ref_logprobs(prompts, comps)

    def score_batch(self, groups: Sequence[Sequence[Sample]]) -> list[list[RewardOutput]]:
        online = self._online(groups) if self.prm == "online" else None
        needs_labels = online is not None or self.advantage == "rloo"
        labels = [self._labels(g) if needs_labels else [0.0] * len(g) for g in groups]
        if online is not None and self.update == "before":
            self._train(online, groups, labels)
        logps = [self._logprobs(g) for g in groups]
        if online is not None and self.update == "after":
            self._train(online, groups, labels)
        rows = [
            [prime_token_rewards(a, b, self.beta, self.drop_last) for a, b in zip(prm, ref, strict=True)]
            for prm, ref in logps
        ]
        sizes = [len(g) for g in rows]
        flat = [r for g in rows for r in g]
        if self.norm == "batch_norm":
            flat = prime_batch_norm(flat)
        normed = [flat[sum(sizes[:k]) : sum(sizes[: k + 1])] for k in range(len(rows))]
        values = self._advantages(normed, labels) if self.advantage == "rloo" else normed
        out = []
        for (prm, ref), implicit, vals, ys in zip(logps, normed, values, labels, strict=True):
            out.append(
                [
                    RewardOutput(
                        None,
                        token_rewards=v,
                        info={
                            "implicit": float(sum(r)),
                            "label": y,
                            "prm_ce": prime_ce_loss(sum(a) - sum(b), y, self.beta),
                        },
                    )
                    for a, b, r, v, y in zip(prm, ref, implicit, vals, ys, strict=True)
                ]
            )
        return out

    def _advantages(
        self, rows: list[list[list[float]]], labels: list[list[float]]
    ) -> list[list[list[float]]]:
        """PRIME's returns per kept group (others get zeros), whitened over the kept tokens, as differences."""
        kept = [self._kept(y) for y in labels]
        rets = [
            prime_rloo_returns(g, y, self.dpo_coef, self.gt_coef) if keep else [[0.0] * len(r) for r in g]
            for g, y, keep in zip(rows, labels, kept, strict=True)
        ]
        tokens = [v for g, keep in zip(rets, kept, strict=True) if keep for r in g for v in r]
        if len(tokens) > 1:
            mean = sum(tokens) / len(tokens)
            var = sum((v - mean) ** 2 for v in tokens) / (len(tokens) - 1)
            scale = 1.0 / math.sqrt(var + 1e-8)
            rets = [
                [[(v - mean) * scale for v in r] for r in g] if keep else g
                for g, keep in zip(rets, kept, strict=True)
            ]
        return [
            [[r[t] - (r[t + 1] if t + 1 < len(r) else 0.0) for t in range(len(r))] for r in g] for g in rets
        ]

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        return self.score_batch([group])[0]


class ProgressMC(ScorerSlot, Composite):
    """Monte-Carlo progress rewards (PAV, Setlur et al. arXiv 2410.08146; TEXT): step h gets
    ``alpha * (V(s_h) - V(s_{h-1}))`` with ``V(s) = (1/n) sum_j 1[rollout j from s correct]``.

    Prefixes ``s_h`` = the completion up to the end of step h (``s_0`` = nothing). Rollouts come from the
    bound scorer's ``sample`` (the prover; PAV uses a separate prover policy, here the current policy unless
    the trainer binds another) and are checked by ``verifier`` on ``prefix + terminate + continuation``.
    ``V(s_H)`` = ``verifier`` on the completion itself (``final``: ``verify``) or sampled (``sample``).
    Precomputed ``Sample.extras[values_key]`` (H + 1 values) skips sampling. ``alpha`` (1.0) UNCONFIRMED.
    """

    name = "progress_mc"

    def __init__(
        self,
        registry: Registry,
        n: int = 8,
        alpha: float = 1.0,
        verifier: Spec = "exact_match",
        terminate: str = "",
        final: Literal["verify", "sample"] = "verify",
        values_key: str = "prefix_values",
    ) -> None:
        need(1 <= n <= 1024, f"{self.name}.n must be in [1, 1024]")
        need(final in ("verify", "sample"), f"{self.name}.final must be verify or sample")
        self.verifier = build_sub(registry, verifier, f"{self.name}.verifier")
        self.n, self.alpha, self.terminate, self.final, self.values_key = (
            int(n),
            float(alpha),
            terminate,
            final,
            values_key,
        )

    def children(self) -> Iterator[RewardModule]:
        yield self.verifier

    def bind_scorer(self, scorer: PolicyScorer | None) -> None:
        ScorerSlot.bind_scorer(self, scorer)
        Composite.bind_scorer(self, scorer)

    def _values(self, s: Sample) -> list[float]:
        steps = steps_of(s)
        spans = locate(s.completion, steps)
        prefixes = [""] + [s.completion[: sp.end] for sp in spans]
        sampled = prefixes if self.final == "sample" else prefixes[:-1]
        scorer = self.resolve([s], self.name)
        conts = scorer.sample([s.prompt] * len(sampled), self.n, [p + self.terminate for p in sampled])
        values = []
        for p, cs in zip(sampled, conts, strict=True):
            probes = [
                Sample(s.prompt, p + self.terminate + c, s.answer, s.task, gold_steps=s.gold_steps)
                for c in cs
            ]
            values.append(mc_value([float(v or 0.0) for v in scalars(self.verifier, probes, 0.0)]))
        if self.final == "verify":
            values.append(float(scalars(self.verifier, [s], 0.0)[0] or 0.0))
        return values

    def score_group(self, group: Sequence[Sample]) -> list[RewardOutput]:
        out = []
        for s in group:
            pre = s.extras.get(self.values_key)
            values = float_list(pre, self.values_key) if pre is not None else self._values(s)
            if len(values) != len(steps_of(s)) + 1:
                raise RewardError(
                    f"{self.name}: {len(values)} prefix values for {len(steps_of(s))} steps (need H+1)"
                )
            out.append(
                RewardOutput(None, step_rewards=progress_rewards(values, self.alpha), info={"values": values})
            )
        return out


class MrtProgress(ProgressMC):
    """MRT episode progress (Qu et al., arXiv 2503.07572; TEXT): like ``progress_mc`` but each prefix is
    forced to stop thinking (``terminate``, template-specific placeholder ``\\n</think>\\n``) before the
    answer is sampled: ``J(mu(.|z_0:j)) - J(mu(.|z_0:j-1))``. MRT's alpha is UNCONFIRMED."""

    name = "mrt_progress"

    def __init__(self, registry: Registry, terminate: str = "\n</think>\n", **kw: object) -> None:
        super().__init__(registry, terminate=terminate, **kw)  # type: ignore[arg-type]
