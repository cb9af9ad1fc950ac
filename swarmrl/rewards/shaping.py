"""Pure step/token shaping math (docs/rewards.md sections 1-3, 9, 13-16). Plain floats, no model.

Each function names the spec section it follows; the catalogue modules wrap them with inputs and config.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from swarmrl.errors import RewardError

Comparator = Literal[">=", ">", "none"]


# --- section 1: G-RA -------------------------------------------------------------------------------------


def gate_open(value: float, threshold: float, comparator: Comparator = ">=") -> bool:
    """``1[value >= threshold]`` (or ``>``; ``none`` = always open, the D-RA baseline)."""
    if comparator == ">=":
        return value >= threshold
    if comparator == ">":
        return value > threshold
    if comparator == "none":
        return True
    raise RewardError(f"comparator must be '>=', '>' or 'none', not {comparator!r}")


def gra(
    r_high: float, step_rewards: Sequence[float], threshold: float, comparator: Comparator = ">="
) -> tuple[list[float], float]:
    """Gated step rewards ``g * r_low_t`` and the trajectory return ``r_high + g * sum_t r_low_t``."""
    g = 1.0 if gate_open(r_high, threshold, comparator) else 0.0
    gated = [g * float(r) for r in step_rewards]
    return gated, float(r_high) + sum(gated)


def priority_gate(
    values: Sequence[float], thresholds: Sequence[float], comparator: Comparator = ">="
) -> list[float]:
    """Multi-level G-RA: level i is kept only if every higher-priority level j < i passes its threshold."""
    if len(thresholds) < len(values) - 1:
        raise RewardError("priority_gate needs a threshold for every level except the last")
    kept, open_ = [], True
    for i, v in enumerate(values):
        kept.append(float(v) if open_ else 0.0)
        if i < len(thresholds):
            open_ = open_ and gate_open(v, thresholds[i], comparator)
    return kept


# --- section 2: Clip and Delta ---------------------------------------------------------------------------


def clip_prm(scores: Sequence[float], eta: float) -> list[float]:
    """``c_k = min(r_k - eta, 0)``: every shaped reward is <= 0, so more steps never add reward."""
    return [min(float(r) - eta, 0.0) for r in scores]


def delta_prm(scores: Sequence[float], last: Literal["drop", "keep"] = "drop") -> list[float]:
    """``d_k = r_k - r_{k+1}``; the last step gets 0 (``drop``, option A) or ``r_K`` (``keep``, option B)."""
    r = [float(x) for x in scores]
    if not r:
        return []
    out = [r[k] - r[k + 1] for k in range(len(r) - 1)]
    out.append(0.0 if last == "drop" else r[-1])
    return out


def prm_step_rewards(
    scores: Sequence[float],
    mode: Literal["clip", "delta", "clip_delta"],
    eta: float,
    alpha: float = 1.0,
    success: float = 0.0,
    last: Literal["drop", "keep"] = "drop",
) -> list[float]:
    """``r^RL_k = alpha * transformed_k + r_succ * 1[k = K]``."""
    if mode == "clip":
        shaped = clip_prm(scores, eta)
    elif mode == "delta":
        shaped = delta_prm(scores, last)
    elif mode == "clip_delta":
        shaped = delta_prm(clip_prm(scores, eta), last)
    else:
        raise RewardError(f"clip/delta mode must be clip, delta or clip_delta, not {mode!r}")
    out = [alpha * s for s in shaped]
    if out:
        out[-1] += success
    return out


# --- section 3: PURE -------------------------------------------------------------------------------------


def prm_score_from_logits(logits: Sequence[float]) -> float:
    """PURE's PRM step score from 2-class logits: ``softmax[1] - softmax[0]`` in [-1, 1]."""
    if len(logits) != 2:
        raise RewardError("a PURE PRM score needs exactly two logits (negative, positive)")
    a, b = float(logits[0]), float(logits[1])
    return math.tanh((b - a) / 2.0)


def min_form_weights(scores: Sequence[float], temperature: float) -> list[float]:
    """``w_k = softmax(-r_k / T)`` over the steps of one response, computed with log-sum-exp."""
    if temperature <= 0:
        raise RewardError("min-form temperature must be > 0 (use mode 'strict' for the exact min)")
    z = [-float(r) / temperature for r in scores]
    if not z:
        return []
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return [math.exp(v - lse) for v in z]


def min_form(scores: Sequence[float], temperature: float) -> list[float]:
    """``r*_k = w_k * r_k``; their sum tends to ``min_k r_k`` as T -> 0."""
    w = min_form_weights(scores, temperature)
    return [wk * float(r) for wk, r in zip(w, scores, strict=True)]


# --- section 9: ReNorm -----------------------------------------------------------------------------------


def renorm(process: Sequence[float], outcome: float) -> list[float]:
    """``r_t = (r_p,t - 1/2) + (r_o - 1/2)`` with ``r_o`` clipped to [0, 1] (keeps the sign guarantee)."""
    r_o = min(1.0, max(0.0, float(outcome)))
    return [float(p) + r_o - 1.0 for p in process]


# --- section 13: CaRL ------------------------------------------------------------------------------------


def carl_step_reward(
    progress: float,
    *,
    outside_lane: bool = False,
    overspeed: float = 0.0,
    overspeed_threshold: float = 2.23,
    ttc_violated: bool = False,
    ttc_factor: float = 0.5,
    comfort_violations: int = 0,
    lane_factor: float = 1.0,
    terminal_penalty: float = 0.0,
) -> float:
    """CaRL single reward: route progress times soft-infraction factors, plus a terminal penalty (<= 0)."""
    p = 0.0 if outside_lane else float(progress)
    if overspeed > 0:
        p *= max(0.0, 1.0 - overspeed / overspeed_threshold)
    if ttc_violated:
        p *= ttc_factor
    if not 0 <= comfort_violations <= 6:
        raise RewardError("comfort_violations counts the 6 comfort metrics: 0..6")
    p *= 1.0 - 0.5 * (comfort_violations / 6.0)
    p *= lane_factor
    return p - terminal_penalty


# --- section 14: IGPO ------------------------------------------------------------------------------------


def igpo_turn_rewards(probs: Sequence[float], final_score: float, alpha: float = 1.0) -> list[float]:
    """Turn rewards from ``P_0..P_{T-1}``: ``IG_t = P_t - P_{t-1}`` for the T-1 non-final turns, then
    ``alpha * final_score`` on the final turn."""
    p = [float(x) for x in probs]
    if not p:
        raise RewardError("IGPO needs at least P_0")
    return [p[t] - p[t - 1] for t in range(1, len(p))] + [alpha * float(final_score)]


# --- section 15: PRIME -----------------------------------------------------------------------------------


def prime_token_rewards(
    logp_prm: Sequence[float], logp_ref: Sequence[float], beta: float = 0.05, drop_last: bool = False
) -> list[float]:
    """``r_t = beta * (log pi_phi - log pi_ref)``; ``drop_last`` zeroes the last token (verl recipe quirk)."""
    if len(logp_prm) != len(logp_ref):
        raise RewardError("PRIME needs PRM and reference log-probs of the same length")
    out = [beta * (float(a) - float(b)) for a, b in zip(logp_prm, logp_ref, strict=True)]
    if drop_last and out:
        out[-1] = 0.0
    return out


def prime_batch_norm(rows: Sequence[Sequence[float]], eps: float = 1e-6) -> list[list[float]]:
    """Divide by ``max over batch and positions of |sum_{t' >= t} r_{t'}| + eps`` (``prime_norm``)."""
    peak = 0.0
    for r in rows:
        acc = 0.0
        for v in reversed(r):
            acc += v
            peak = max(peak, abs(acc))
    return [[v / (peak + eps) for v in r] for r in rows]


def _masked_rloo(values: list[list[float]], masks: list[list[bool]]) -> list[list[float]]:
    n = len(values)
    if n < 2:
        raise RewardError("RLOO needs at least two samples per prompt")
    means = []
    for v, m in zip(values, masks, strict=True):
        picked = [x for x, keep in zip(v, m, strict=True) if keep]
        means.append(sum(picked) / len(picked) if picked else 0.0)
    baseline = sum(means) / (n - 1)
    return [
        [x * n / (n - 1) - baseline if keep else 0.0 for x, keep in zip(v, m, strict=True)]
        for v, m in zip(values, masks, strict=True)
    ]


def prime_rloo_returns(
    implicit: Sequence[Sequence[float]], acc: Sequence[float], dpo_coef: float = 5.0, gt_coef: float = 5.0
) -> list[list[float]]:
    """PRIME advantage before whitening: RLOO per source (implicit token rewards on all tokens, outcome
    accuracy on the last token), weighted, then reverse cumulative sums (gamma = 1)."""
    rows = [[float(x) for x in r] for r in implicit]
    if len(rows) != len(acc):
        raise RewardError("PRIME RLOO needs one accuracy per sample")
    total = [[0.0] * len(r) for r in rows]
    if dpo_coef != 0:
        src = _masked_rloo(rows, [[True] * len(r) for r in rows])
        total = [
            [a + dpo_coef * b for a, b in zip(t, s, strict=True)] for t, s in zip(total, src, strict=True)
        ]
    if gt_coef != 0:
        vals = [[0.0] * len(r) for r in rows]
        masks = [[False] * len(r) for r in rows]
        for i, r in enumerate(rows):
            if r:
                vals[i][-1] = float(acc[i])
                masks[i][-1] = True
        src = _masked_rloo(vals, masks)
        total = [
            [a + gt_coef * b for a, b in zip(t, s, strict=True)] for t, s in zip(total, src, strict=True)
        ]
    out = []
    for r in total:
        acc_sum, ret = 0.0, [0.0] * len(r)
        for t in range(len(r) - 1, -1, -1):
            acc_sum += r[t]
            ret[t] = acc_sum
        out.append(ret)
    return out


def prime_ce_loss(sum_log_ratio: float, acc: float, beta: float = 0.05) -> float:
    """Online implicit-PRM update: ``BCE(sigmoid(beta * sum_t log ratio), acc)`` (for the trainer)."""
    x = beta * float(sum_log_ratio)
    # log sigmoid(x) and log(1 - sigmoid(x)) = log sigmoid(-x), both stable
    ls_pos = -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))
    ls_neg = -math.log1p(math.exp(x)) if x <= 0 else -x - math.log1p(math.exp(-x))
    return -(float(acc) * ls_pos + (1.0 - float(acc)) * ls_neg)


# --- section 16: progress (PAV / MRT) --------------------------------------------------------------------


def mc_value(outcomes: Sequence[float]) -> float:
    """Monte-Carlo success estimate ``(1/n) sum_j 1[rollout j correct]``."""
    if not outcomes:
        raise RewardError("a Monte-Carlo value needs at least one rollout")
    return sum(1.0 if o > 0.5 else 0.0 for o in outcomes) / len(outcomes)


def progress_rewards(values: Sequence[float], alpha: float = 1.0) -> list[float]:
    """``alpha * (V(s_{h+1}) - V(s_h))`` for consecutive prefix values ``V(s_0)..V(s_H)``."""
    v = [float(x) for x in values]
    return [alpha * (v[h + 1] - v[h]) for h in range(len(v) - 1)]


def mrt_advantage(outcome: float, termination_value: float) -> float:
    """MRT RL recipe: ``A = R(rollout) - R_termination(prefix)`` (replaces the group-mean baseline)."""
    return float(outcome) - float(termination_value)
