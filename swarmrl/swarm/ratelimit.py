"""Per-peer token buckets: each peer may send ``rate`` envelopes per second with bursts up to ``burst``."""

from __future__ import annotations

from dataclasses import dataclass

from swarmrl.errors import InvalidValue
from swarmrl.swarm.clock import Clock
from swarmrl.swarm.lru import LRU


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token bucket per key, in an LRU table (bounded memory whatever the number of keys)."""

    def __init__(self, rate: float, burst: int, clock: Clock, max_keys: int = 10_000) -> None:
        if rate <= 0 or burst < 1:
            raise InvalidValue("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._buckets: LRU[str, _Bucket] = LRU(max_keys)

    def allow(self, key: str, cost: float = 1.0) -> bool:
        """Take ``cost`` tokens from ``key``'s bucket if it holds them; False means over the rate."""
        now = self._clock.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets.put(key, bucket)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return True
        return False
