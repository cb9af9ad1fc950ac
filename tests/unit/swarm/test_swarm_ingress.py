"""Bounded ingress: the selection, the round quota, and how the receive path and memory transport use them."""

from __future__ import annotations

import asyncio
import random

import pytest

from swarmrl.swarm.ingress import Ingress, IngressSettings
from swarmrl.swarm.transports.memory import LinkModel, MemoryHub

MEMBERS = [f"peer{i:02d}" for i in range(20)]


def ingress(budget: int = 32, senders: int = 8, rotate: int = 1) -> Ingress:
    return Ingress(IngressSettings(budget, senders, rotate), random.Random(1))


def test_small_swarm_takes_everyone_and_splits_the_budget_among_them() -> None:
    ing = ingress()
    assert not ing.rotate(0, MEMBERS[:2])  # 2 members <= K: everyone, nothing to tell the transport
    assert ing.selection is None and ing.quota() == 16
    assert all(ing.selected(p) for p in MEMBERS)  # even a newcomer
    assert ing.allowed_groups("peer00", 20) == 16
    assert not ing.admits("peer00")  # its quota is spent; peer01 still has its share
    assert ing.admits("peer01") and ing.allowed_groups("peer01", 16) == 16
    assert not ing.admits("peer02")  # the round's budget is spent
    ing.start_round(1)
    assert ing.admits("peer02")
    ing.rotate(1, MEMBERS[:8])
    assert ing.quota() == 4  # the default budget over the default K: today's publish_groups


def test_selection_is_uniform_and_quota_bounds_each_sender() -> None:
    ing = ingress()
    assert ing.rotate(0, MEMBERS)
    sel = ing.selection
    assert sel is not None and len(sel) == 8 and sel <= set(MEMBERS)
    assert ing.quota() == 4
    ing.start_round(1)
    ing.start_round(2)  # one round after the rotation the old "everyone" is no longer admitted
    outsider = next(p for p in MEMBERS if p not in sel)
    assert not ing.selected(outsider)
    chosen = sorted(sel)[0]
    assert ing.selected(chosen) and ing.admits(chosen) and ing.allowed_groups(chosen, 6) == 4
    assert not ing.admits(chosen)  # quota used
    # fairness: over many rotations every member is picked about K/M of the time
    for r in range(3, 2003):
        ing.rotate(r, MEMBERS)
    picks = ing.counters.picks
    assert set(picks) == set(MEMBERS)
    expected = 2000 * 8 / 20
    assert all(abs(c - expected) < 0.15 * expected for c in picks.values())


def test_previous_selection_stays_admitted_for_one_round() -> None:
    ing = ingress(rotate=1)
    ing.rotate(0, MEMBERS)
    ing.start_round(1)
    ing.start_round(2)
    first = ing.selection
    assert first is not None
    ing.rotate(2, MEMBERS)
    ing.start_round(3)
    gone = [p for p in first if ing.selection is not None and p not in ing.selection]
    assert gone and ing.selected(gone[0])  # envelopes already on their way
    ing.start_round(4)
    assert not ing.selected(gone[0])


def test_departed_senders_are_replaced_before_the_rotation_is_due() -> None:
    ing = ingress(rotate=100)
    ing.rotate(0, MEMBERS)
    sel = ing.selection
    assert sel is not None
    assert not ing.rotate(1, MEMBERS)  # not due, nobody left
    left = [p for p in MEMBERS if p != sorted(sel)[0]]
    assert ing.rotate(2, left) and ing.selection is not None and ing.selection <= set(left)


def test_far_members_take_at_most_explore_slots_unless_near_ones_run_short() -> None:
    near, far = MEMBERS[:12], [f"far{i:03d}" for i in range(200)]
    ing = Ingress(IngressSettings(32, 8, 1, explore=2), random.Random(3))
    for r in range(200):
        ing.rotate(r, near, far)
        sel = ing.selection
        assert sel is not None and len(sel) == 8
        assert len(sel - set(near)) == 2  # exactly the exploration share, never more
    # over time every far member gets picked now and then: the senders range over the whole swarm
    assert len([p for p in ing.counters.picks if p.startswith("far")]) > 0.8 * len(far)
    # few connected members: the rest of K comes from far ones
    ing.rotate(1000, near[:3], far)
    assert ing.selection is not None and len(ing.selection) == 8 and len(ing.selection - set(near)) == 5
    # far members count towards "more than K known": selection starts although only 3 are connected
    small = Ingress(IngressSettings(32, 8, 1, explore=2), random.Random(3))
    assert small.rotate(0, near[:3], far[:6]) and small.selection is not None
    # explore 0: connected members only (and "everyone" while they are K or fewer)
    none = Ingress(IngressSettings(32, 8, 1, explore=0), random.Random(3))
    none.rotate(0, near, far)
    assert none.selection is not None and none.selection <= set(near)


def test_a_selected_far_member_that_vanishes_is_replaced() -> None:
    near, far = MEMBERS[:12], ["farA", "farB", "farC"]
    ing = Ingress(IngressSettings(32, 8, 100, explore=2), random.Random(5))
    ing.rotate(0, near, far)
    sel = ing.selection
    assert sel is not None
    gone = sorted(sel - set(near))[0]  # its dial failed: the transport lists it no more
    assert ing.rotate(1, near, [f for f in far if f != gone])
    assert ing.selection is not None and gone not in ing.selection


def test_zero_budget_is_the_old_behaviour() -> None:
    ing = ingress(budget=0)
    assert not ing.rotate(0, MEMBERS) and ing.selection is None
    assert ing.selected("x") and ing.admits("x") and ing.allowed_groups("x", 10_000) == 10_000


def test_memory_hub_delivers_only_to_receivers_that_selected_the_sender() -> None:
    async def run() -> None:
        hub = MemoryHub()
        got: dict[str, list[str]] = {p: [] for p in ("a", "b", "c", "d")}
        ts = {p: hub.transport(p) for p in got}
        for p, t in ts.items():
            t.subscribe(lambda data, via, p=p: got[p].append(via))
            await t.start()
        ts["b"].select_senders(frozenset({"a"}))
        ts["c"].select_senders(frozenset({"d"}))
        await ts["a"].publish(b"x")
        await ts["d"].publish(b"y")
        for _ in range(5):
            await asyncio.sleep(0)
        assert got == {"a": ["d"], "b": ["a"], "c": ["d"], "d": ["a"]}  # 'a' and 'd' never selected: all
        await ts["b"].close()
        await ts["b"].start()  # the selection survives churn
        await ts["d"].publish(b"z")
        for _ in range(5):
            await asyncio.sleep(0)
        assert got["b"] == ["a"]

    asyncio.run(run())


def test_link_model_queues_on_bandwidth_and_delays() -> None:
    clock = {"t": 0.0}
    events: list[tuple[float, str]] = []

    def later(delay: float, cb: object) -> None:
        events.append((clock["t"] + delay, "x"))

    link = LinkModel(latency_median_s=0.1, latency_sigma=0.0, uplink_bytes_per_s=1000.0)
    hub = MemoryHub(link=link, scheduler=later, now=lambda: clock["t"])

    async def run() -> None:
        a, b, c = hub.transport("a"), hub.transport("b"), hub.transport("c")
        for t in (a, b, c):
            await t.start()
        await a.publish(b"0" * 500)  # two copies leave one after another at 1000 B/s

    asyncio.run(run())
    assert [round(t, 3) for t, _ in events] == [0.6, 1.1]
    assert LinkModel().latency(random.Random(0)) == 0.0


@pytest.mark.parametrize("sigma", [0.0, 0.5])
def test_link_latency_median(sigma: float) -> None:
    rng = random.Random(3)
    xs = sorted(LinkModel(latency_median_s=0.05, latency_sigma=sigma).latency(rng) for _ in range(2001))
    assert abs(xs[1000] - 0.05) < 0.005
