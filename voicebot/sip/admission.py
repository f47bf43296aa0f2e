"""Who may make the bot work, and how often: per-source token buckets and
refusal logging that a flood cannot turn into a log flood.

Theory of operation: every request is screened before it is parsed (the
user agent's allow-list), every new INVITE takes a token from its source's
bucket before a transaction exists (`sip.invite_rate_per_source`, burst
`sip.invite_burst_per_source`), and a stateless refusal (403, 503) takes a
token from a second bucket, so what we send back to one address is bounded
too; beyond it the request is dropped. Buckets are kept per source IP in a
bounded table: when it is full, idle (full) buckets go first, then the
oldest, so a spoofed-source flood costs a fixed amount of memory.

What it never does: I/O or logging; refusals are logged by the user agent
through `voicebot.refusal_log.RefusalLog`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MAX_SOURCES = 4096


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up (a classic token bucket)."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= self.burst


class SourceLimiter:
    """One `TokenBucket` per source IP, in a table of at most `max_sources`."""

    def __init__(
        self,
        rate: float,
        burst: float,
        *,
        max_sources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._max = max_sources
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, source_ip: str) -> bool:
        now = self._clock()
        bucket = self._buckets.get(source_ip)
        if bucket is None:
            if len(self._buckets) >= self._max:
                self._prune(now)
            bucket = self._buckets[source_ip] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)

    def _prune(self, now: float) -> None:
        for ip in [ip for ip, b in self._buckets.items() if b.full(now)]:
            del self._buckets[ip]
        while len(self._buckets) >= self._max:
            del self._buckets[next(iter(self._buckets))]  # the oldest entry
