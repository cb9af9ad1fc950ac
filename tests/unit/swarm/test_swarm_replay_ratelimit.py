"""Replay window and its persistence; token buckets; LRU bounds."""

from __future__ import annotations

from pathlib import Path

from swarmrl.swarm.clock import ManualClock
from swarmrl.swarm.lru import LRU
from swarmrl.swarm.ratelimit import RateLimiter
from swarmrl.swarm.replay import ReplayGuard


def test_strictly_increasing_without_window() -> None:
    guard = ReplayGuard(window=0)
    assert guard.check_and_record("a", 5)
    assert not guard.check_and_record("a", 5)
    assert not guard.check_and_record("a", 4)
    assert guard.check_and_record("a", 6)
    assert guard.check_and_record("b", 1)  # per sender


def test_window_accepts_reordered_once() -> None:
    guard = ReplayGuard(window=4)
    assert guard.check_and_record("a", 10)
    assert guard.check_and_record("a", 8)
    assert not guard.check_and_record("a", 8)
    assert guard.check_and_record("a", 12)
    assert not guard.check_and_record("a", 7)  # 5 behind the highest: outside the window
    assert not guard.check_and_record("a", 10)
    assert guard.check_and_record("a", 9)
    assert guard.check_and_record("a", 100)
    assert not guard.check_and_record("a", 12)


def test_state_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "replay.json"
    guard = ReplayGuard(window=4)
    guard.check_and_record("a", 10)
    guard.check_and_record("a", 8)
    guard.save(path)
    fresh = ReplayGuard(window=4)
    assert fresh.load(path) == 1
    assert not fresh.check_and_record("a", 10)
    assert not fresh.check_and_record("a", 8)
    assert fresh.check_and_record("a", 9)
    path.write_text("{not json")
    assert ReplayGuard().load(path) == 0


def test_token_bucket() -> None:
    clock = ManualClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)  # +1 token
    assert limiter.allow("a")
    assert not limiter.allow("a")
    assert limiter.allow("b")


def test_lru_is_bounded() -> None:
    lru: LRU[int, int] = LRU(3)
    for i in range(10):
        lru.put(i, i)
    assert len(lru) == 3 and 9 in lru and 0 not in lru
    lru.get(7)
    lru.put(10, 10)
    assert 7 in lru and 8 not in lru
