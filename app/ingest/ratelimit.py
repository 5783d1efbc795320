"""Per-tenant token buckets for ingest (records per second), the quota split between the
processes that accept ingest.

Each gateway and web app keeps its own buckets (no shared state on the hot path: a request
would otherwise wait for a database round trip). So that N of them together hold a tenant to
its rate, each allows `rate / ingest_rate_limit_processes` with a burst of one second of that
share. Set the number to how many processes take ingest (docs/ingest.md); a tenant whose
traffic reaches only some of them gets less than its full rate, never more.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.ingest.errors import RateLimited
from app.settings import Settings


@dataclass
class TokenBucket:
    """`rate` tokens per second, holding at most `capacity` (one second's worth by default).

    A request larger than the capacity is let through when the bucket is full and leaves it
    in debt, so big batches are slowed down, not refused forever.
    """

    rate: float
    capacity: float
    tokens: float
    stamp: float

    def take(self, n: int, now: float) -> float:
        """Take `n` tokens; return 0.0, or the seconds to wait when there are too few."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        need = min(float(n), self.capacity)
        if self.tokens >= need:
            self.tokens -= n
            return 0.0
        return (need - self.tokens) / self.rate


@dataclass
class RateLimiter:
    """One bucket per tenant; a rate of None means the default, 0 means unlimited. This
    process allows `1 / processes` of each tenant's rate."""

    default_rate: float
    clock: Callable[[], float] = time.monotonic
    processes: int = 1
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(settings.ingest_default_rate_limit,
                   processes=settings.ingest_rate_limit_processes)

    def check(self, tenant: str, n: int, rate: float | None) -> None:
        """Charge `n` records to `tenant`; raise `RateLimited` with the wait when over."""
        rate = self.default_rate if rate is None else rate
        if rate <= 0:
            return
        share = rate / self.processes
        now = self.clock()
        bucket = self._buckets.get(tenant)
        if bucket is None or bucket.rate != share:
            bucket = self._buckets[tenant] = TokenBucket(share, share, share, now)
        wait = bucket.take(n, now)
        if wait:
            raise RateLimited(wait, rate)
