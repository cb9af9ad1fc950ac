"""Recovering-rewards task scheduler (Simchi-Levi et al. 2106.14813): the offline plan against brute force on
small known cases, the online UCB / plug-in estimates, and the TaskSampler hook."""

from __future__ import annotations

import itertools
import random

import pytest

from swarmrl.errors import TaskError
from swarmrl.tasks import TaskSampler, build_source
from swarmrl.tasks.schedule import RecoveringScheduler, cycle_value, offline_plan, periodic_value

# R_k(d) for d = 1..4: arm 0 recovers fast and high, arms 1 and 2 slowly
CURVES = [[0.2, 0.9, 1.0, 1.0], [0.1, 0.3, 0.5, 0.8], [0.1, 0.3, 0.5, 0.8]]


def _brute_force(curves: list[list[float]], k_max: int, max_len: int) -> float:
    """Best steady-state reward per round over every cyclic sequence up to ``max_len`` rounds."""
    n = len(curves)
    subsets = [c for r in range(1, k_max + 1) for c in itertools.combinations(range(n), r)]
    best = 0.0
    for length in range(1, max_len + 1):
        for seq in itertools.product(subsets, repeat=length):
            best = max(best, cycle_value(seq, curves))
    return best


def test_offline_plan_worked_example() -> None:
    plan = offline_plan(CURVES, k_max=1, max_period=4)
    # A every 2 rounds (0.9 / 2), B and C every 4 (0.8 / 4 each): A B A C, 0.85 per round
    assert plan.periods == (2, 4, 4)
    assert plan.value == pytest.approx(0.85)
    cycle = [tuple(plan.due(t)) for t in range(4)]
    assert all(len(arms) == 1 for arms in cycle)
    assert cycle_value(cycle, CURVES) == pytest.approx(0.85)


@pytest.mark.parametrize(
    ("curves", "k_max"), [(CURVES, 1), (CURVES, 2), ([[0.5, 0.6, 0.9], [0.4, 0.9, 0.9]], 1)]
)
def test_offline_plan_matches_brute_force(curves: list[list[float]], k_max: int) -> None:
    plan = offline_plan(curves, k_max=k_max, max_period=4)
    cycle = [tuple(plan.due(t)) for t in range(12)]  # lcm of periods <= 4 divides 12
    assert cycle_value(cycle, curves) == pytest.approx(plan.value)
    assert plan.value == pytest.approx(_brute_force(curves, k_max, 6 if k_max == 1 else 4))


def test_plan_value_is_the_relaxation_objective() -> None:
    assert periodic_value(CURVES, (2, 4, 4)) == pytest.approx(0.9 / 2 + 0.8 / 4 + 0.8 / 4)
    assert periodic_value(CURVES, (3, 3, 3)) == pytest.approx((1.0 + 0.5 + 0.5) / 3)
    assert periodic_value(CURVES, (1, 0, 0)) == pytest.approx(0.2)


def test_online_estimates_learn_the_curves() -> None:
    rng = random.Random(0)
    sched = RecoveringScheduler(3, "ucb", max_gap=4, max_period=4, ucb_c=0.3, replan_every=8)
    pulls = [0, 0, 0]
    for _ in range(400):
        arms = sched.choose()
        gaps = dict(sched.pending[-1])
        for a in arms:
            pulls[a] += 1
        sched.observe({a: CURVES[a][gaps[a] - 1] + rng.gauss(0, 0.05) for a in arms})
    est = sched.estimates()
    assert est[0][1] == pytest.approx(0.9, abs=0.1)  # arm 0 at idle time 2, the planned period
    assert pulls[0] > pulls[1] and pulls[0] > pulls[2]
    assert sched.plan is not None and sched.plan.periods[0] == 2
    plug_in = RecoveringScheduler(3, "recovering", max_gap=4)
    assert plug_in.c == 0.0


def test_scheduler_state_round_trip_and_errors() -> None:
    sched = RecoveringScheduler(2, "ucb", max_gap=3)
    for _ in range(5):
        sched.observe({a: 0.5 for a in sched.choose()})
    fresh = RecoveringScheduler(2, "ucb", max_gap=3)
    fresh.load_state_dict(sched.state_dict())
    assert fresh.state_dict() == sched.state_dict()
    assert fresh.choose() == sched.choose()
    with pytest.raises(TaskError):
        RecoveringScheduler(2, "ucb", max_gap=4).load_state_dict(sched.state_dict())
    with pytest.raises(TaskError):
        RecoveringScheduler(2, "ucb", arms_per_round=3)
    with pytest.raises(TaskError):
        RecoveringScheduler(2, "fixed")  # type: ignore[arg-type]


def test_task_sampler_draws_from_the_pulled_sources_and_reports_the_signal() -> None:
    sources = [build_source("arithmetic", d, {}, 1, 1000) for d in ("add", "sub", "mul")]
    sched = RecoveringScheduler(3, "ucb", arms_per_round=2, max_gap=4, max_period=4)
    sampler = TaskSampler(sources, [1, 1, 1], random.Random(0), 8, sched)
    tasks = sampler.sample(4)
    pulled = set(sched.pending[-1][k][0] for k in range(len(sched.pending[-1])))
    owners = {next(k for k, s in enumerate(sources) if s.owns(t.ref)) for t in tasks}
    assert owners == pulled and 1 <= len(pulled) <= 2
    rewards = sampler.observe(tasks, [True, False, False, False])
    assert set(rewards) == pulled and not sched.pending
    assert sum(sum(c) for c in sched.counts) == len(pulled)
    assert sampler.observe([], []) == {}  # nothing sampled: nothing observed
    fixed = TaskSampler(sources, [1, 1, 1], random.Random(0), 8)
    assert fixed.observe(tasks, [True] * 4) == {} and fixed.state_dict() == {}


def test_config_check_names_the_scheduler_field() -> None:
    from swarmrl.config import NodeConfig
    from swarmrl.errors import ConfigError
    from swarmrl.node.validate import build_scheduler, check_semantics

    cfg = NodeConfig.model_validate(
        {"tasks": {"schedule": "ucb", "scheduler": {"arms_per_round": 2}, "sources": [{"dataset": "add"}]}}
    )
    with pytest.raises(ConfigError) as err:
        check_semantics(cfg)
    assert err.value.field == "tasks.scheduler.arms_per_round"
    ok = NodeConfig.model_validate({"tasks": {"schedule": "recovering", "sources": [{"dataset": "add"}] * 2}})
    sched = build_scheduler(ok)
    assert sched is not None and sched.mode == "recovering" and sched.c == 0.0
    assert build_scheduler(NodeConfig.model_validate({})) is None
