"""Pool caps and ages; each sampler strategy; the adaptive controller's rule."""

from __future__ import annotations

import random

import pytest
from swarm_helpers import exact_match, group

from swarmrl.errors import RewardError
from swarmrl.protocol.types import RolloutGroup
from swarmrl.swarm.pool import RolloutPool
from swarmrl.swarm.sampler import AdaptiveController, AdaptiveSettings, Sampler, has_advantage


def from_peer(index: int, peer: str, texts: list[str] | None = None) -> RolloutGroup:
    g = group(index, texts)
    g.origin, g.peer = "external", peer
    return g


def test_pool_total_cap_drops_oldest() -> None:
    pool = RolloutPool(max_groups=4, per_peer_share=1.0, max_age_rounds=10)
    pool.add([from_peer(i, f"p{i}") for i in range(6)], round_=1)
    assert len(pool) == 4
    assert [e.group.task.index for _, e in pool.entries()] == [2, 3, 4, 5]


def test_pool_per_peer_share_cap() -> None:
    pool = RolloutPool(max_groups=8, per_peer_share=0.25, max_age_rounds=10)
    assert pool.per_peer_cap == 2
    pool.add([from_peer(i, "greedy") for i in range(5)], round_=1)
    pool.add([from_peer(100, "modest")], round_=1)
    assert pool.peer_counts() == {"greedy": 2, "modest": 1}
    # the greedy peer's newest groups replaced its oldest
    assert sorted(e.group.task.index for _, e in pool.entries() if e.peer == "greedy") == [3, 4]


def test_pool_max_age_in_rounds() -> None:
    pool = RolloutPool(max_groups=10, per_peer_share=1.0, max_age_rounds=2)
    pool.add([from_peer(1, "a")], round_=1)
    pool.add([from_peer(2, "a")], round_=3)
    assert pool.prune(3) == 0
    assert pool.prune(4) == 1
    assert [e.group.task.index for _, e in pool.entries()] == [2]


def _pool_with_mixed_groups() -> RolloutPool:
    pool = RolloutPool(max_groups=100, per_peer_share=1.0, max_age_rounds=10)
    for i in range(10):
        q_answer = str(sum(divmod(i, 100)))
        # even indices: all completions right (zero advantage); odd: mixed (useful)
        texts = [q_answer] * 4 if i % 2 == 0 else [q_answer, "x", "y", q_answer]
        pool.add([from_peer(i, f"p{i % 3}", texts)], round_=1)
    return pool


def test_uniform_takes_j_and_removes_them() -> None:
    pool = _pool_with_mixed_groups()
    chosen = Sampler("uniform", random.Random(0)).sample(pool, 4, exact_match)
    assert len(chosen) == 4 and len(pool) == 6
    assert len({g.task.index for g in chosen}) == 4


def test_nonzero_advantage_uniform_drops_flat_groups() -> None:
    pool = _pool_with_mixed_groups()
    calls: list[int] = []

    def rescore(groups: list[RolloutGroup]) -> list[list[float]]:
        calls.append(len(groups))
        return exact_match(groups)

    chosen = Sampler("nonzero_advantage_uniform", random.Random(0), rescore_factor=10).sample(
        pool, 3, rescore
    )
    assert len(chosen) == 3
    assert all(g.task.index % 2 == 1 for g in chosen)
    assert all(has_advantage(g.rewards) for g in chosen)  # carries the local rewards
    assert calls == [10]
    # flat groups left the pool; the 2 unused useful ones stay
    assert sorted(e.group.task.index for _, e in pool.entries()) == sorted(
        {1, 3, 5, 7, 9} - {g.task.index for g in chosen}
    )


def test_rescore_budget_is_bounded() -> None:
    pool = _pool_with_mixed_groups()
    seen: list[int] = []
    Sampler("nonzero_advantage_uniform", random.Random(1), rescore_factor=2).sample(
        pool, 2, lambda gs: seen.append(len(gs)) or exact_match(gs)
    )
    assert seen == [4]


def test_advisory_rewards_order_candidates() -> None:
    pool = RolloutPool(max_groups=100, per_peer_share=1.0, max_age_rounds=10)
    for i in range(20):
        g = from_peer(i, "p", [str(i), "x"])
        if i == 13:
            g.advisory_rewards = [1.0, 0.0]
        pool.add([g], 1)
    chosen = Sampler("nonzero_advantage_uniform", random.Random(0), rescore_factor=1).sample(
        pool, 1, exact_match
    )
    assert [g.task.index for g in chosen] == [13]


def test_top_reward_takes_highest_mean() -> None:
    pool = RolloutPool(max_groups=100, per_peer_share=1.0, max_age_rounds=10)
    for i, right in enumerate([0, 3, 1, 4, 2]):
        answer = str(sum(divmod(i, 100)))
        pool.add([from_peer(i, "p", [answer] * right + ["no"] * (4 - right))], 1)
    chosen = Sampler("top_reward", random.Random(0), rescore_factor=10).sample(pool, 2, exact_match)
    assert [g.task.index for g in chosen] == [3, 1]


def test_rescore_shape_is_checked() -> None:
    pool = _pool_with_mixed_groups()
    with pytest.raises(RewardError):
        Sampler("nonzero_advantage_uniform", random.Random(0)).sample(pool, 2, lambda gs: [[1.0]])


def test_adaptive_refuses_what_hurts_and_takes_what_helps() -> None:
    settings = AdaptiveSettings(window=4, min_evidence=2, harm_margin=0.01, probe_every=100)
    hurt = AdaptiveController(settings)
    assert hurt.decide(8) == 0  # no evidence yet: train on own groups
    # rounds after taking external groups lose reward, rounds without gain
    reward = 0.5
    for used in [4, 0, 4, 0, 4, 0]:
        hurt.observe(reward, zero_advantage_share=0.5, external_used=used)
        reward += -0.1 if used else 0.1
    hurt.observe(reward, 0.5, 0)
    assert hurt.verdict() == "hurts"
    assert hurt.decide(8) == 0

    helps = AdaptiveController(settings)
    reward = 0.5
    for used in [4, 0, 4, 0, 4, 0]:
        helps.observe(reward, 0.0, used)
        reward += 0.1 if used else -0.05
    helps.observe(reward, 0.0, 0)
    assert helps.verdict() == "helps"
    assert helps.decide(8) == 8


def test_adaptive_needs_a_gain_beyond_noise() -> None:
    ctl = AdaptiveController(AdaptiveSettings(window=8, min_evidence=3, harm_margin=0.01, probe_every=100))
    reward = 0.5
    # external rounds gain +0.03 on average, but round-to-round noise is +-0.2: no verdict, no sharing
    for used, change in [
        (4, 0.23),
        (0, -0.2),
        (4, -0.17),
        (0, 0.2),
        (4, 0.03),
        (0, 0.0),
        (4, 0.03),
        (0, 0.0),
    ]:
        ctl.observe(reward, 0.5, used)
        reward += change
    ctl.observe(reward, 0.5, 0)
    assert ctl.verdict() == "unknown"
    assert ctl.decide(8) == 0


def test_adaptive_probes_with_need_scaled_j() -> None:
    ctl = AdaptiveController(AdaptiveSettings(window=4, min_evidence=2, harm_margin=0.01, probe_every=3))
    ctl.observe(0.5, zero_advantage_share=0.0, external_used=0)
    assert ctl.decide(8) == 0  # no verdict: refuse
    ctl.observe(0.5, zero_advantage_share=1.0, external_used=0)
    ctl.observe(0.5, zero_advantage_share=1.0, external_used=0)
    assert ctl.decide(8) == 8  # third round: probe; own groups useless -> all of J
    ctl.observe(0.5, zero_advantage_share=0.0, external_used=8)
    ctl.observe(0.5, zero_advantage_share=0.0, external_used=0)
    ctl.observe(0.5, zero_advantage_share=0.0, external_used=0)
    assert ctl.decide(8) == 4  # sixth round: probe; own groups all carry signal -> half of J
    assert ctl.decide(0) == 0


def test_adaptive_strategy_uses_the_controller() -> None:
    pool = _pool_with_mixed_groups()
    ctl = AdaptiveController(AdaptiveSettings(probe_every=2))
    sampler = Sampler("adaptive", random.Random(0), rescore_factor=10, adaptive=ctl)
    sampler.adaptive.observe(0.5, zero_advantage_share=0.0, external_used=0)
    assert sampler.sample(pool, 4, exact_match) == [] and sampler.last_j == 0
    sampler.adaptive.observe(0.5, zero_advantage_share=0.0, external_used=0)
    chosen = sampler.sample(pool, 4, exact_match)  # a probe round
    assert sampler.last_j == 2 and len(chosen) == 2
    assert all(has_advantage(g.rewards) for g in chosen)


def test_dense_signal_counts_when_the_totals_are_equal() -> None:
    """A rescorer that sees per-token (dense) rewards marks a group with equal totals as useful; the
    sampler takes it instead of dropping it as flat. Without the mark, equal totals mean flat."""
    from swarmrl.swarm.sampler import HAS_SIGNAL

    pool = RolloutPool(max_groups=10, max_age_rounds=8, per_peer_share=1.0)
    flat_dense, flat = from_peer(1, "p", ["a", "a", "a", "a"]), from_peer(2, "p", ["a", "a", "a", "a"])
    pool.add([flat_dense, flat], 1)

    def rescore(groups: list[RolloutGroup]) -> list[list[float]]:
        for g in groups:
            if g is flat_dense:
                g.extras[HAS_SIGNAL] = True  # equal outcome, different step rewards
        return [[0.5] * g.size for g in groups]

    chosen = Sampler("nonzero_advantage_uniform", random.Random(0)).sample(pool, 2, rescore)
    assert chosen == [flat_dense]
    assert len(pool) == 0  # the truly flat one left the pool
