"""Admission limits: the create rate limit (token bucket) and live capacity.

Both are provider-neutral: the core asks them, and the face turns a refusal
into its provider's 429 (or gRPC RESOURCE_EXHAUSTED, for modal).
"""

from __future__ import annotations

import math
from typing import Callable, Optional


class TokenBucket:
    """`rate` tokens a second, at most `burst` banked; starts full.

    The clock is injected (the event loop's monotonic clock in the server,
    a fake in tests) so the edge can be tested exactly.
    """

    __slots__ = ("rate", "burst", "_tokens", "_last", "_clock")

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]):
        self.rate = float(rate)
        self.burst = max(1, int(burst))
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        if now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self) -> Optional[float]:
        """Take a token. Returns None when granted, else the seconds until one
        will be available (what Retry-After tells the client)."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        if self.rate <= 0:
            return math.inf
        return (1.0 - self._tokens) / self.rate

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens


class Capacity:
    """Counts slots held by live sandboxes and by creates in flight, so that
    the limit holds exactly even when many creates arrive before any answers."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: Optional[int]):
        self.limit = limit
        self.used = 0

    def try_acquire(self) -> bool:
        if self.limit is not None and self.used >= self.limit:
            return False
        self.used += 1
        return True

    def release(self) -> None:
        if self.used > 0:
            self.used -= 1
