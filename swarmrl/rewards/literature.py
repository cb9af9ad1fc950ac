"""Pure math of the second batch of reward papers (issue 17). Plain floats, no model, no torch.

Each function names its paper; the catalogue modules (``catalogue/literature.py``) wrap them with inputs,
the pipeline combine mode ``heron`` uses :func:`heron_scores`, and the task scheduler lives in
``swarmrl/tasks/schedule.py``. What a paper's abstract fixes is marked TEXT, our choices UNCONFIRMED.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

from swarmrl.errors import RewardError

# --- potential-based shaping (Ng, Harada & Russell 1999; the PAV and Robo-Dopamine arguments) --------------


def potential_shaping(potentials: Sequence[float], gamma: float = 1.0, phi0: float = 0.0) -> list[float]:
    """``F_k = gamma * Phi(s_k) - Phi(s_{k-1})`` for the H transitions of one trajectory.

    ``potentials`` are ``Phi(s_1) .. Phi(s_H)`` (the value after each step); ``Phi(s_0) = phi0`` and the
    terminal state's potential is 0 whatever ``potentials[-1]`` says (that is what makes the shaping
    policy-invariant: ``sum_k gamma^(k-1) F_k = -phi0`` for every trajectory).
    """
    if not 0.0 < gamma <= 1.0:
        raise RewardError("potential shaping needs 0 < gamma <= 1")
    phis = [float(phi0)] + [float(p) for p in potentials[:-1]] + [0.0] if potentials else [float(phi0)]
    return [gamma * phis[k] - phis[k - 1] for k in range(1, len(phis))]


def discounted_sum(rewards: Sequence[float], gamma: float = 1.0) -> float:
    """``sum_k gamma^k r_k`` (k from 0)."""
    return sum(float(r) * gamma**k for k, r in enumerate(rewards))


def cumulative(values: Sequence[float]) -> list[float]:
    """Running sums: the return so far after each step (a potential made from a dense module's rewards)."""
    out, acc = [], 0.0
    for v in values:
        acc += float(v)
        out.append(acc)
    return out


# --- constant-per-segment advantages through the default ``returns`` credit ------------------------------


def telescope(advantages: Sequence[float]) -> list[float]:
    """Step rewards ``D_k = A_k - A_{k+1}`` (``A_{H+1} = 0``): under reverse-cumulative credit every token of
    step k then carries exactly ``A_k`` (used by SLATE and OPRL step advantages)."""
    a = [float(x) for x in advantages] + [0.0]
    return [a[k] - a[k + 1] for k in range(len(a) - 1)]


# --- exploration bonuses (Henaff et al., "A Study of Global and Episodic Bonuses for Exploration in
# Contextual MDPs", ICML 2023) ---------------------------------------------------------------------------

BonusCombine = Literal["product", "sum", "episodic", "global"]


def episodic_bonus(keys: Sequence[str]) -> list[float]:
    """Within-episode count bonus ``1 / sqrt(N_e(a))`` (N_e counts the group's completions with key a)."""
    counts = Counter(keys)
    return [1.0 / math.sqrt(counts[k]) for k in keys]


def global_bonus(keys: Sequence[str], history: Mapping[str, int]) -> list[float]:
    """Across-episode count bonus ``1 / sqrt(1 + N_g(a))`` with the counts of earlier rounds."""
    return [1.0 / math.sqrt(1.0 + float(history.get(k, 0))) for k in keys]


def combine_bonus(episodic: Sequence[float], global_: Sequence[float], how: BonusCombine) -> list[float]:
    """The paper's combinations: ``product`` (the one it recommends), ``sum``, or one bonus alone."""
    if how == "product":
        return [e * g for e, g in zip(episodic, global_, strict=True)]
    if how == "sum":
        return [e + g for e, g in zip(episodic, global_, strict=True)]
    if how == "episodic":
        return [float(e) for e in episodic]
    if how == "global":
        return [float(g) for g in global_]
    raise RewardError(f"bonus combine must be product, sum, episodic or global, not {how!r}")


def outcome_gap(outcomes: Sequence[float]) -> float:
    """Smallest positive difference between distinct outcome values of a group (inf when all are equal)."""
    distinct = sorted(set(float(o) for o in outcomes))
    if len(distinct) < 2:
        return math.inf
    return min(b - a for a, b in itertools.pairwise(distinct))


def gated_bonus(
    outcomes: Sequence[float],
    bonus: Sequence[float],
    beta: float,
    gate: Literal["zero_variance", "capped"] = "zero_variance",
    cap: float = 0.5,
) -> list[float]:
    """``outcome + beta' * b`` with a gate so that no bonus can lift a completion over a better outcome.

    ``zero_variance``: the bonus is added only when every outcome of the group is equal (there is nothing it
    could outrank). ``capped``: always added, with ``beta' = min(beta, cap * gap)`` where ``gap`` is the
    smallest outcome difference in the group and ``cap < 1``; since ``0 <= b <= 1`` a worse outcome plus its
    bonus stays below a better one.
    """
    if gate not in ("zero_variance", "capped"):
        raise RewardError("bonus gate must be zero_variance or capped")
    if not 0.0 < cap < 1.0:
        raise RewardError("bonus cap must be in (0, 1)")
    gap = outcome_gap(outcomes)
    if gate == "zero_variance":
        eff = beta if math.isinf(gap) else 0.0
    else:
        eff = beta if math.isinf(gap) else min(beta, cap * gap)
    return [float(o) + eff * float(b) for o, b in zip(outcomes, bonus, strict=True)]


# --- ArenaRL tournaments (Zhang et al., arXiv 2601.06487) ------------------------------------------------

Judge = Callable[[int, int], float]
"""``judge(i, j)``: 1.0 when completion i beats j, 0.0 when it loses, 0.5 for a tie."""


def round_robin(n: int, judge: Judge) -> tuple[list[float], int]:
    """Every pair once: score ``(wins + ties / 2) / (n - 1)``; returns (scores, comparisons made)."""
    if n < 2:
        return [0.5] * n, 0
    wins = [0.0] * n
    for i in range(n):
        for j in range(i + 1, n):
            w = judge(i, j)
            wins[i] += w
            wins[j] += 1.0 - w
    return [w / (n - 1) for w in wins], n * (n - 1) // 2


def bracket_order(n: int) -> list[int]:
    """Standard seeded bracket positions for ``n`` (a power of two) seeds: 1 meets n, 2 meets n-1, ..."""
    order = [0]
    while len(order) < n:
        size = 2 * len(order)
        order = [x for s in order for x in (s, size - 1 - s)]
    return order


def seeded_single_elimination(seeds: Sequence[int], judge: Judge) -> tuple[list[float], int]:
    """Seeded single elimination (ArenaRL's O(N) scheme): ``seeds`` lists completion indices best first;
    the bracket pads to a power of two with byes. Ranking: by the round a completion lost in (the champion
    last), ties inside a round broken by seed. Score of rank position q (0 = best) ``1 - q / (n - 1)``.
    Returns (scores by completion index, comparisons made = n - 1)."""
    n = len(seeds)
    if n < 2:
        return [0.5] * n, 0
    size = 1 << (n - 1).bit_length()
    slots: list[int | None] = [seeds[p] if p < n else None for p in bracket_order(size)]
    eliminated: dict[int, int] = {}
    seed_rank = {c: r for r, c in enumerate(seeds)}
    rnd, made = 0, 0
    while len(slots) > 1:
        nxt: list[int | None] = []
        for a, b in zip(slots[::2], slots[1::2], strict=True):
            if a is None or b is None:
                nxt.append(a if b is None else b)
                continue
            made += 1
            w = judge(a, b)
            # a tie goes to the better seed
            win, lose = (a, b) if w > 0.5 or (w == 0.5 and seed_rank[a] < seed_rank[b]) else (b, a)
            eliminated[lose] = rnd
            nxt.append(win)
        slots = nxt
        rnd += 1
    champion = slots[0]
    if champion is not None:
        eliminated[champion] = rnd
    ranking = sorted(range(n), key=lambda c: (-eliminated[c], seed_rank[c]))
    scores = [0.0] * n
    for q, c in enumerate(ranking):
        scores[c] = 1.0 - q / (n - 1)
    return scores, made


# --- HERON hierarchical comparison (Bukharin et al., "Deep Reinforcement Learning from Hierarchical
# Preference Design", arXiv 2309.02632) -------------------------------------------------------------------


def heron_compare(a: Sequence[float | None], b: Sequence[float | None], margins: Sequence[float]) -> float:
    """1.0 if a is preferred, 0.0 if b is, 0.5 if no factor decides. Factors are in priority order; the
    first factor whose values differ by more than its margin decides (a missing value ranks lowest)."""
    for x, y, m in zip(a, b, margins, strict=True):
        if x is None and y is None:
            continue
        if x is None or y is None:
            return 0.0 if x is None else 1.0
        if abs(float(x) - float(y)) > m:
            return 1.0 if x > y else 0.0
    return 0.5


def heron_scores(factors: Sequence[Sequence[float | None]], margins: Sequence[float]) -> list[float]:
    """Group reward: each completion's win-rate ``(wins + ties / 2) / (n - 1)`` over the others under the
    hierarchical comparison (``factors[i]`` = completion i's factor values in priority order)."""
    n = len(factors)
    return round_robin(n, lambda i, j: heron_compare(factors[i], factors[j], margins))[0]


# --- TVM per-token targets (Lee et al., "Token-Supervised Value Models", arXiv 2407.12863) ---------------


def prefix_success_targets(ids: Sequence[Sequence[int]], outcomes: Sequence[float]) -> list[list[float]]:
    """Per-token target of completion i at position t: the mean outcome of the group's completions that
    share its first t tokens (t = 0: the whole group), i.e. the empirical success rate of the prefix the
    token is chosen from. ``len(result[i]) == len(ids[i])``."""
    if len(ids) != len(outcomes):
        raise RewardError("TVM targets need one outcome per completion")
    out = []
    for row in ids:
        targets = []
        for t in range(len(row)):
            prefix = tuple(row[:t])
            same = [float(o) for r, o in zip(ids, outcomes, strict=True) if tuple(r[:t]) == prefix]
            targets.append(sum(same) / len(same))
        out.append(targets)
    return out


# --- P2S path faithfulness (Zhong et al., arXiv 2601.20649) ----------------------------------------------


def p2s_step_rewards(values: Sequence[float], form: Literal["delta", "absolute"] = "delta") -> list[float]:
    """Step rewards from path-faithfulness values ``PFR_0 .. PFR_{H-1}`` (the probability of the reference
    chain's remainder after 0 .. H-1 of the completion's H steps). ``delta``: ``PFR_k - PFR_{k-1}`` for
    k = 1..H-1 (progress; telescopes, cannot be farmed by writing more steps); ``absolute``: ``PFR_k``.
    The last step gets 0 either way: the outcome reward judges the finished chain."""
    v = [float(x) for x in values]
    if not v:
        return []
    if form == "delta":
        body = [v[k] - v[k - 1] for k in range(1, len(v))]
    elif form == "absolute":
        body = v[1:]
    else:
        raise RewardError("p2s form must be delta or absolute")
    return [*body, 0.0]


# --- OPRL (Liu et al., "Online Process Reward Learning for Agentic RL", arXiv 2509.19199) ---------------


def dpo_pair_loss(chosen_log_ratio: float, rejected_log_ratio: float, beta: float) -> float:
    """Trajectory DPO: ``-log sigma(beta * (sum log pi_phi/pi_old (tau+) - sum log pi_phi/pi_old (tau-)))``."""
    x = beta * (float(chosen_log_ratio) - float(rejected_log_ratio))
    return math.log1p(math.exp(-x)) if x >= 0 else -x + math.log1p(math.exp(x))


def preference_pairs(outcomes: Sequence[float], max_pairs: int) -> list[tuple[int, int]]:
    """(better, worse) index pairs of a group by outcome, best against worst first, at most ``max_pairs``."""
    order = sorted(range(len(outcomes)), key=lambda i: -float(outcomes[i]))
    pairs = [(a, b) for a in order for b in reversed(order) if float(outcomes[a]) > float(outcomes[b])]
    return pairs[:max_pairs]


def zscore(values: Sequence[float], eps: float = 1e-6) -> list[float]:
    """``(v - mean) / (std + eps)`` with the population std (0 for fewer than two values)."""
    v = [float(x) for x in values]
    if len(v) < 2:
        return [0.0] * len(v)
    mean = sum(v) / len(v)
    std = math.sqrt(sum((x - mean) ** 2 for x in v) / len(v))
    return [(x - mean) / (std + eps) for x in v]
