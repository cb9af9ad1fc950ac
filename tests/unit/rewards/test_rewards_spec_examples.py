"""Every worked example of docs/rewards.md, reproduced to 1e-6 from the pure functions."""

from __future__ import annotations

import math

import pytest

from swarmrl.rewards import advantages as adv
from swarmrl.rewards import combine as C
from swarmrl.rewards import credit
from swarmrl.rewards import shaping as S
from swarmrl.rewards import text as T
from swarmrl.rewards.catalogue.model import rlpr_reward, rlpr_score, sequence_logprob, verifree_reward
from swarmrl.rewards.catalogue.outcome import verpo_weights
from swarmrl.rewards.catalogue.textual import grpo_lambda_select

TOL = 1e-6


def close(a: list[float] | float, b: list[float] | float, tol: float = TOL) -> bool:
    if isinstance(a, list | tuple):
        assert isinstance(b, list | tuple)
        return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))
    assert not isinstance(b, list | tuple)
    return abs(a - b) <= tol


# --- 1 G-RA ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("r_high", "gated", "total"),
    [(1.0, [0.2, 0.1, 0.3], 1.6), (0.0, [0.0, 0.0, 0.0], 0.0), (-1.0, [0.0, 0.0, 0.0], -1.0)],
)
def test_gra_table(r_high: float, gated: list[float], total: float) -> None:
    g, ret = S.gra(r_high, [0.2, 0.1, 0.3], threshold=1.0)
    assert close(g, gated) and close(ret, total)


def test_gra_threshold_equality_and_comparator() -> None:
    # r_high == threshold: open with >=, closed with >
    assert close(S.gra(1.0, [0.5], 1.0, ">=")[0], [0.5])
    assert close(S.gra(1.0, [0.5], 1.0, ">")[0], [0.0])
    assert close(S.gra(-5.0, [0.5], 1.0, "none")[0], [0.5])  # D-RA baseline


def test_priority_gate() -> None:
    assert S.priority_gate([1.0, 0.5, 0.7], [1.0, 0.6]) == [1.0, 0.5, 0.0]
    assert S.priority_gate([0.0, 0.5, 0.7], [1.0, 0.0]) == [0.0, 0.0, 0.0]


# --- 2 Clip / Delta --------------------------------------------------------------------------------------

R2 = [0.7, 0.2, 0.4, 0.8]


def test_clip() -> None:
    c = S.clip_prm(R2, 0.5)
    assert close(c, [0.0, -0.3, -0.1, 0.0])
    steps = S.prm_step_rewards(R2, "clip", 0.5, success=1.0)
    assert close(credit.returns(steps)[0], 0.6)


def test_delta_options() -> None:
    assert close(S.delta_prm(R2, "drop"), [0.5, -0.2, -0.4, 0.0])
    assert close(credit.returns(S.prm_step_rewards(R2, "delta", 0.5, success=1.0)), [0.9, 0.4, 0.6, 1.0])
    keep = S.prm_step_rewards(R2, "delta", 0.5, success=1.0, last="keep")
    assert close(credit.returns(keep), [1.7, 1.2, 1.4, 1.8])
    assert close(S.prm_step_rewards(R2, "clip_delta", 0.5), [0.3, -0.2, -0.1, 0.0])


# --- 3 PURE ----------------------------------------------------------------------------------------------


def test_pure_min_form() -> None:
    r = [0.8, -0.4, 0.6]
    w = S.min_form_weights(r, 0.1)
    assert close(w, [6.0e-6, 0.999948, 4.5e-5])
    star = S.min_form(r, 0.1)
    assert close(star, [5.0e-6, -0.399979, 2.7e-5])
    assert close(sum(star), -0.399947)
    assert close(credit.returns(star), [-0.399947, -0.399952, 2.7e-5])
    assert close(credit.strict_min_returns(r), [-0.4, -0.4, 0.6])
    w1 = S.min_form_weights(r, 1.0)
    assert close(w1, [0.180456, 0.599135, 0.220409])
    assert close(sum(S.min_form(r, 1.0)), 0.036956)
    assert close(S.prm_score_from_logits([0.0, 2.0]), 0.761594)


def test_pure_small_temperature_is_stable() -> None:
    star = S.min_form([0.8, -0.4, 0.6], 1e-4)  # exp(8000) would overflow without log-sum-exp
    assert close(sum(star), -0.4)


def test_strict_min_masking() -> None:
    # token positions: step ends at 1 and 3; non-step tokens hold 0
    rewards, mask = credit.place([0.5, 0.2], [1, 3], 5)
    assert close(credit.strict_min_returns(rewards, mask, True), [0.2, 0.2, 0.2, 0.2, 0.0])
    # PURE's code path (no masking): non-step zeros enter the min
    assert close(credit.strict_min_returns(rewards, mask, False), [0.0, 0.0, 0.0, 0.0, 0.0])


# --- 4 VeRPO ---------------------------------------------------------------------------------------------


def test_verpo_weights() -> None:
    passes = [[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]]
    w = verpo_weights(passes)
    assert close(w, [1 / 6, 1 / 3, 1 / 2])
    dense = [sum(wj * p for wj, p in zip(w, row, strict=True)) for row in passes]
    assert close(dense, [0.5, 0.166667, 1.0, 0.0])
    assert verpo_weights([[1, 1], [1, 1]]) == [0.0, 0.0]  # rho = 1 everywhere: no contrast, no NaN


# --- 5 likelihood ----------------------------------------------------------------------------------------


def test_likelihood_rewards() -> None:
    lp = [-0.1, -0.5, -0.2]
    assert close(sequence_logprob(lp), -0.8)
    assert close(verifree_reward(lp, "p"), 0.449329)
    assert verifree_reward(None, "logp") == -math.inf and verifree_reward(None, "p") == 0.0
    assert close(rlpr_score(lp, "mean_prob"), 0.776700)
    assert close(rlpr_score(lp, "mean_logp"), -0.266667)
    assert close(rlpr_score(lp, "geo_mean_prob"), 0.765928)
    assert close(rlpr_reward(rlpr_score(lp), 0.5, 1.0, 0.1), 0.349030)
    assert rlpr_reward(0.4, 0.5, 1.0) == pytest.approx(0.1)  # negative delta thresholded to 0
    assert rlpr_reward(0.9, 0.5, 0.0, -1) == -1.0


def test_probability_reward_underflow() -> None:
    long_good, long_bad = [-0.5] * 2000, [-0.6] * 2000
    assert verifree_reward(long_good, "p") == 0.0 == verifree_reward(long_bad, "p")  # flatlines
    assert sequence_logprob(long_good) > sequence_logprob(long_bad)  # log space still ranks them
    assert math.isfinite(sequence_logprob(long_bad))


# --- 6 LSC / 7 PAR ---------------------------------------------------------------------------------------


def test_lsc() -> None:
    assert close(C.lsc(1.0, 0.5), -0.474077)
    assert close(C.lsc_and([1.0, -1.0], [0.5, 0.0]), -1.787339)
    ref = C.normal_quantile_reference([1.0, 2.5, 0.0], 0.85, ddof=1)
    assert close(ref, 2.470827)
    assert close(C.normal_quantile_reference([1.0, 2.5, 0.0], 0.85, ddof=0), 2.231511)
    assert close(C.lsc(2.0, ref), -0.956018)
    assert C.log_sigmoid(-1000.0) == -1000.0 and C.log_sigmoid(1000.0) == 0.0  # stable


def test_par() -> None:
    assert close(C.par(2.0, [1.0, 2.5, 0.0], k=1), 0.663132)
    assert close(C.par(2.0, [1.0, 2.5, 0.0], k=2), 0.710584)
    assert close(C.par(2.0, [1.0] * 10 + [100.0], k=1), C.sigmoid(1.0))  # only the first 10 refs


# --- 8 GRPO-lambda / Kimi --------------------------------------------------------------------------------


def test_kimi_and_grpo_lambda() -> None:
    lens = T.kimi_length([True, True, True, False], [100, 200, 300, 400])
    assert close(lens, [0.5, 0.166667, -0.166667, -0.5])
    lp = [c + v for c, v in zip([1, 1, 1, 0], lens, strict=True)]
    assert close(lp, [1.5, 1.166667, 0.833333, -0.5])
    assert grpo_lambda_select([1.0, 0.75, 0.25, 0.0], 0.5) == [True, True, False, False]
    assert T.kimi_length([True, False], [50, 50]) == [0.0, 0.0]


# --- 9 ReNorm --------------------------------------------------------------------------------------------


def test_renorm() -> None:
    assert close(S.renorm([0.8, 0.6, 0.9], 0.0), [-0.2, -0.4, -0.1])
    assert close(S.renorm([0.8, 0.6, 0.9], 1.0), [0.8, 0.6, 0.9])
    assert close(S.renorm([0.8], 3.0), [0.8])  # outcome clipped to [0, 1]


# --- 10 ensembles / Ctrl-U -------------------------------------------------------------------------------


def test_ensembles() -> None:
    r = [1.0, 2.0, 4.0]
    assert close(C.aggregate(r, "mean"), 2.333333)
    assert close(C.aggregate(r, "median"), 2.0)
    assert close(C.aggregate(r, "mean_minus_std", 1.0, ddof=0), 1.086114)
    assert close(C.aggregate(r, "mean_minus_std", 1.0, ddof=1), 0.805808)
    assert close(C.aggregate(r, "worst_case"), 1.0)
    assert close(C.aggregate(r, "uwo", 0.5, ddof=0), 1.555556)
    assert close(C.ctrl_u_loss(0.4, 0.5, 0.1), 0.292612)
    assert close(C.ctrl_u_weight(0.5), 0.606531)


# --- 11 RPR ----------------------------------------------------------------------------------------------

RPR_TEXT = "First, we need to compute x. Wait, let me check. Therefore x = 2."


def test_rpr() -> None:
    assert close(T.rpr(RPR_TEXT), 0.25)
    assert close(T.rpr("Assistant: <think> " + RPR_TEXT), 0.25)
    assert close(T.rpr(RPR_TEXT[18:]), 0.15)  # the code's find(-1)+19 quirk drops 18 chars
    assert close(T.rpr(RPR_TEXT + " user: again"), 0.0)  # n_user penalty, floored at 0
    words = " ".join(f"w{i}" for i in range(20))
    assert close(T.rep_ngram(words + " " + words), 1 / 21)


# --- 12 Co-Reward ----------------------------------------------------------------------------------------


def test_majority_vote() -> None:
    assert T.majority_vote(["5", "5", "3", "5"]) == "5"
    assert T.majority_vote(["3", "3", "5", ""]) == "3"
    assert T.majority_vote(["7", "9", "9", "7"]) == "7"
    assert T.majority_vote(["", ""]) == ""


# --- 13 CaRL ---------------------------------------------------------------------------------------------


def test_carl() -> None:
    r = S.carl_step_reward(0.5, overspeed=1.115, ttc_violated=True)
    assert close(r, 0.125)
    assert close(S.carl_step_reward(0.5, overspeed=1.115, ttc_violated=True, terminal_penalty=1.0), -0.875)
    assert S.carl_step_reward(0.5, outside_lane=True) == 0.0


# --- 14 IGPO ---------------------------------------------------------------------------------------------


def test_igpo() -> None:
    r = S.igpo_turn_rewards([0.2, 0.35, 0.3], 1.0)
    assert close(r, [0.15, -0.05, 1.0])
    assert close(credit.returns(r), [1.1, 0.95, 1.0])


# --- 15 PRIME --------------------------------------------------------------------------------------------


def test_prime() -> None:
    r = S.prime_token_rewards([-1.0, -0.5, -2.0], [-1.2, -0.5, -1.0], 0.05)
    assert close(r, [0.01, 0.0, -0.05])
    assert close(sum(r), -0.04)
    assert close(credit.returns(r), [-0.04, -0.05, -0.05])
    assert close(
        S.prime_token_rewards([-1.0, -0.5, -2.0], [-1.2, -0.5, -1.0], 0.05, drop_last=True), [0.01, 0.0, 0.0]
    )
    normed = S.prime_batch_norm([r])
    assert close(normed[0], [x / (0.05 + 1e-6) for x in r])


def test_prime_rloo_by_hand() -> None:
    implicit = [[0.1, 0.3], [0.0, 0.2]]
    acc = [1.0, 0.0]
    # n = 2: r_hat = 2 r - (sum of sample means); means 0.2, 0.1 -> baseline 0.3; acc means 1, 0 -> 1
    out = S.prime_rloo_returns(implicit, acc, 1.0, 1.0)
    s0 = [2 * 0.1 - 0.3, 2 * 0.3 - 0.3 + (2 * 1.0 - 1.0)]
    s1 = [2 * 0.0 - 0.3, 2 * 0.2 - 0.3 + (2 * 0.0 - 1.0)]
    assert close(out[0], [s0[0] + s0[1], s0[1]]) and close(out[1], [s1[0] + s1[1], s1[1]])


def test_prime_ce_loss() -> None:
    assert close(S.prime_ce_loss(0.0, 1.0), math.log(2))
    assert math.isfinite(S.prime_ce_loss(1e6, 0.0))


# --- 16 progress -----------------------------------------------------------------------------------------


def test_progress() -> None:
    values = [S.mc_value([1] * 2 + [0] * 6), S.mc_value([1] * 4 + [0] * 4), S.mc_value([1] * 3 + [0] * 5)]
    assert close(values, [0.25, 0.5, 0.375])
    assert close(S.progress_rewards(values), [0.25, -0.125])
    assert S.mrt_advantage(1.0, 0.25) == 0.75


# --- 17 length / format ----------------------------------------------------------------------------------


def test_dapo() -> None:
    got = [T.dapo_overlong(n, 100, 20) for n in (70, 80, 90, 100, 101)]
    assert close(got, [0.0, 0.0, -0.5, -1.0, -1.0])


def test_cosine() -> None:
    assert close(T.cosine_scaled(250, True), 0.926777)
    assert close(T.cosine_scaled(250, False), -0.926777)


@pytest.mark.parametrize(
    ("text", "r1", "tags", "trl", "rlpr"),
    [
        ("<think>\nabc\n</think>\n<answer>\n4\n</answer>", 1.0, 1.0, 1.0, 1.0),
        ("<think>abc</think><answer>4</answer>", 0.0, 0.0, 1.0, 1.0),
        ("<think>\nabc\n</think>\n<answer>\n4\n</answer>\ngarbage after", 1.0, 1.0, 1.0, 1.0),
    ],
)
def test_formats(text: str, r1: float, tags: float, trl: float, rlpr: float) -> None:
    assert T.r1_format(text) == r1
    assert T.tag_count(text) == tags
    assert T.think_format(text) == trl
    assert T.rlpr_format(text) == rlpr


def test_format_pitfalls() -> None:
    trailing = "<think>\nabc\n</think>\n<answer>\n4\n</answer>\ngarbage after"
    assert T.r1_format(trailing, strict_end=True) == 0.0
    assert T.think_format("abc</think>answer") == 0.0  # template-prefilled <think> breaks ^<think>
    assert T.rlpr_format("<think>a</think><think>b</think><answer>4</answer>") == 0.0
    assert T.reasoning_steps("Step 1: a\nStep 2: b\nFinally, c") == 1.0


# --- 18 advantages ---------------------------------------------------------------------------------------


def test_advantages() -> None:
    r = [1.0, 0.0, 0.0, 1.0]
    assert close(adv.grpo(r, adv.EPS_VERL), [0.866024, -0.866024, -0.866024, 0.866024])
    assert close(adv.grpo(r, adv.EPS_TRL), [0.865875, -0.865875, -0.865875, 0.865875])
    assert close(adv.dr_grpo(r), [0.5, -0.5, -0.5, 0.5])
    assert close(adv.rloo(r), [0.666667, -0.666667, -0.666667, 0.666667])
    assert adv.grpo([1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]  # all-equal group: zero advantage
    assert adv.zero_variance([2.0, 2.0])
    assert close(adv.grpo_single_verl([3.0]), [3.0 / (1 + 1e-6)])
    batch = adv.compute_advantages([[1.0, 0.0], [5.0, 3.0]], "batch_std")
    assert close(batch[0], [0.5 / (2.217356 + 1e-4), -0.5 / (2.217356 + 1e-4)], 1e-5)


def test_gdpo_and_process_grpo() -> None:
    # per-module normalisation: a module's scale does not matter (unlike sum-then-normalise)
    scaled = adv.gdpo([[[1.0, 0.0]], [[10.0, 0.0]]], [1.0, 1.0])
    plain = adv.gdpo([[[1.0, 0.0]], [[1.0, 0.0]]], [1.0, 1.0])
    assert close(scaled[0], plain[0], 1e-3) and close(plain[0], [0.707107, -0.707107], 1e-3)
    steps = adv.process_grpo([[1.0, 0.0], [0.0]])
    # mean 1/3, sample std 0.57735: z = [1.1547, -0.57735], [-0.57735]
    assert close(steps[0], [1.1547 - 0.57735, -0.57735], 1e-4) and close(steps[1], [-0.57735], 1e-4)
