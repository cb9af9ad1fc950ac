"""Model-based modules with a scripted PolicyScorer (the trainer implements the real one)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pytest

from swarmrl.errors import RewardError
from swarmrl.rewards.base import Sample
from swarmrl.rewards.pipeline import build_pipeline, token_advantages
from swarmrl.rewards.scorer import PolicyScorer

LP = [-0.1, -0.5, -0.2]


class FakeScorer:
    """Scripted log-probs and samples; records every call."""

    def __init__(
        self,
        logprob_fn: Callable[[str, str, str], list[float]],
        ref_fn: Callable[[str, str, str], list[float]] | None = None,
        sample_fn: Callable[[str, str, int], list[str]] | None = None,
    ) -> None:
        self.logprob_fn, self.ref_fn, self.sample_fn = logprob_fn, ref_fn, sample_fn
        self.calls: list[tuple[str, list[str], list[str], list[str]]] = []

    def logprobs(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> list[list[float]]:
        pre = list(prefixes) if prefixes is not None else [""] * len(prompts)
        self.calls.append(("logprobs", list(prompts), list(completions), pre))
        return [self.logprob_fn(p, c, x) for p, c, x in zip(prompts, completions, pre, strict=True)]

    def ref_logprobs(
        self, prompts: Sequence[str], completions: Sequence[str], prefixes: Sequence[str] | None = None
    ) -> list[list[float]]:
        pre = list(prefixes) if prefixes is not None else [""] * len(prompts)
        fn = self.ref_fn or self.logprob_fn
        return [fn(p, c, x) for p, c, x in zip(prompts, completions, pre, strict=True)]

    def sample(
        self, prompts: Sequence[str], n: int, prefixes: Sequence[str] | None = None
    ) -> list[list[str]]:
        pre = list(prefixes) if prefixes is not None else [""] * len(prompts)
        self.calls.append(("sample", list(prompts), [], pre))
        assert self.sample_fn is not None
        return [self.sample_fn(p, x, n) for p, x in zip(prompts, pre, strict=True)]


def s(completion: str, answer: str = "4", **extras: object) -> Sample:
    return Sample("Q", completion, answer, completion_ids=list(range(len(completion))), extras=dict(extras))


def test_fake_is_a_policy_scorer() -> None:
    assert isinstance(FakeScorer(lambda p, c, x: []), PolicyScorer)


def test_logprob_answer_and_binding() -> None:
    fake = FakeScorer(lambda p, c, x: list(LP))
    pipe = build_pipeline([("logprob_answer", 1.0, {})])
    with pytest.raises(RewardError, match="bind_scorer"):
        pipe.score_group([s("reason <answer>4</answer>")])
    pipe.bind_scorer(fake)
    scored = pipe.score_group([s("reason <answer>4</answer>")])
    assert scored.rewards == [pytest.approx(-0.8)]
    assert fake.calls[0][2] == ["4"] and fake.calls[0][3] == ["reason <answer>"]
    mean = build_pipeline([("logprob_answer", 1.0, {"normalize": "mean"})])
    g = [s("r", policy_scorer=fake)]  # handle via extras also works
    assert mean.score_group(g).rewards == [pytest.approx(-0.266667, abs=1e-6)]


def test_verifree() -> None:
    fake = FakeScorer(lambda p, c, x: list(LP))
    pipe = build_pipeline([("verifree", 1.0, {"mode": "p"})])
    pipe.bind_scorer(fake)
    out = pipe.score_group([s("<think>a</think>\n<answer>4</answer>"), s("no end of thinking")])
    assert out.modules["verifree"] == [pytest.approx(0.449329, abs=1e-6), 0.0]
    logp = build_pipeline([("verifree", 1.0, {})])
    logp.bind_scorer(fake)
    # The module follows the repo (log 0 = -inf); the pipeline refuses to let -inf reach the advantages.
    (module,) = [e.module for e in logp.entries]
    assert module.score_group([s("no marker")])[0].scalar == -math.inf
    assert logp.score_group([s("no marker")]).modules["verifree"] == [None]


def test_rlpr_reward_and_prompt_only_baseline() -> None:
    def lp(prompt: str, completion: str, prefix: str) -> list[float]:
        return [math.log(0.5)] * 3 if prefix == "<answer>" else list(LP)

    fake = FakeScorer(lp)
    pipe = build_pipeline([("rlpr", 1.0, {})])
    pipe.bind_scorer(fake)
    text = "<think>a</think><answer>4</answer>"
    scored = pipe.score_group([s(text), s(text)])
    assert scored.rewards == pytest.approx([0.349030, 0.349030], abs=1e-6)
    assert len(fake.calls) == 2  # one batched call for the group, one for the (prompt, answer) baseline


def test_igpo_turn_rewards_through_pipeline() -> None:
    probs = {"": 0.2, "s1": 0.35, "s1;s2": 0.3}
    pseudo = "\nNow there's enough information to answer\n</think>\n<answer>\n"

    def lp(prompt: str, completion: str, prefix: str) -> list[float]:
        assert prefix.endswith(pseudo) and completion == "4"
        return [math.log(probs[prefix[: -len(pseudo)]])] * 2

    fake = FakeScorer(lp)
    text = "s1;s2;<answer>4</answer>"
    pipe = build_pipeline([("igpo", 1.0, {})])
    pipe.bind_scorer(fake)
    scored = pipe.score_group([s(text)])
    assert scored.modules["igpo"] == [pytest.approx(1.1)]
    assert scored.token_rewards is not None
    row = scored.token_rewards[0]
    assert row[0] == pytest.approx(1.1) and row[3] == pytest.approx(0.95) and row[-1] == pytest.approx(1.0)


def test_prime_from_columns_and_scorer() -> None:
    g = [s("abc", prm_logprobs=[-1.0, -0.5, -2.0], ref_logprobs=[-1.2, -0.5, -1.0])]
    raw = build_pipeline(
        [("prime", 1.0, {"norm": "none", "prm": "columns", "advantage": "dense"})], credit={"mode": "raw"}
    ).score_group(g)
    assert raw.token_rewards == [pytest.approx([0.01, 0.0, -0.05])]
    ret = build_pipeline(
        [("prime", 1.0, {"norm": "none", "prm": "columns", "advantage": "dense"})]
    ).score_group(g)
    assert ret.token_rewards == [pytest.approx([-0.04, -0.05, -0.05])]
    fake = FakeScorer(lambda p, c, x: [-1.0] * len(c), ref_fn=lambda p, c, x: [-2.0] * len(c))
    pipe = build_pipeline([("prime", 1.0, {"prm": "policy", "advantage": "dense"})], credit={"mode": "raw"})
    pipe.bind_scorer(fake)
    both = pipe.score([[s("ab")], [s("abcd")]])  # batch norm across groups: max |return| = 4 * 0.05
    assert both[0].token_rewards == [pytest.approx([0.05 / (0.2 + 1e-6)] * 2)]
    assert both[1].token_rewards == [pytest.approx([0.05 / (0.2 + 1e-6)] * 4)]
    with pytest.raises(RewardError, match="token rewards"):
        build_pipeline([("prime", 1.0, {"prm": "columns", "advantage": "dense"})]).score_group(
            [s("ab", prm_logprobs=[0.0], ref_logprobs=[0.0])]
        )


def test_progress_mc_with_sampler() -> None:
    def sampler(prompt: str, prefix: str, n: int) -> list[str]:
        good = {"": 2, "1": 4}[prefix]
        cont = "1;8" if prefix == "" else ";8"
        return [cont] * good + ["0"] * (n - good)

    fake = FakeScorer(lambda p, c, x: [], sample_fn=sampler)
    g = [Sample("0+1+7=", "1;9", "1;8", completion_ids=[0, 1, 2], gold_steps=("1", "8"))]
    pipe = build_pipeline([("progress_mc", 1.0, {"n": 8})], credit={"mode": "raw"})
    pipe.bind_scorer(fake)
    scored = pipe.score_group(g)
    # V = [2/8, 4/8, final verify of "1;9" = 0] -> progress [+0.25, -0.5]
    assert scored.token_rewards == [pytest.approx([0.25, 0.0, -0.5])]
    pre = build_pipeline([("progress_mc", 1.0, {})], credit={"mode": "raw"})
    g2 = [Sample("q", "a;b", "z", completion_ids=[0, 1, 2], extras={"prefix_values": [0.25, 0.5, 0.375]})]
    assert pre.score_group(g2).token_rewards == [pytest.approx([0.25, 0.0, -0.125])]


def test_mrt_forces_termination_before_sampling() -> None:
    fake = FakeScorer(lambda p, c, x: [], sample_fn=lambda p, x, n: [""] * n)
    pipe = build_pipeline([("mrt_progress", 1.0, {"n": 2})])
    pipe.bind_scorer(fake)
    pipe.score_group([Sample("q", "a;b", "a;b", completion_ids=[0, 1, 2])])
    prefixes = fake.calls[0][3]
    assert prefixes == ["\n</think>\n", "a\n</think>\n"]


def test_model_dense_rewards_reach_token_advantages() -> None:
    g = [
        s("ab", prm_logprobs=[-1.0, -1.0], ref_logprobs=[-2.0, -1.0]),
        s("ab", prm_logprobs=[-1.0, -1.0], ref_logprobs=[-1.0, -2.0]),
    ]
    pipe = build_pipeline(
        [("exact_match", 1.0, {}), ("prime", 1.0, {"norm": "none", "prm": "columns", "advantage": "dense"})]
    )
    scored = pipe.score_group(g)
    adv = token_advantages([scored], [g])
    assert adv[0][0][0] == pytest.approx(adv[0][1][0]) and adv[0][0][1] != pytest.approx(adv[0][1][1])
