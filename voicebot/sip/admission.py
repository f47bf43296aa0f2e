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

What it never does: I/O or logging of its own except through `RefusalLog`,
which writes one warning line per kind of refusal per interval, carrying how
many were suppressed since the last line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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


class RefusalLog:
    """Expected refusals as warnings, at most one line per event per `interval` seconds.

    The first refusal of a kind is logged at once; those within the next
    `interval` are only counted, and the next line says how many there were
    (`suppressed`). 500 INVITEs/s gives about one line a second, not 500
    tracebacks.
    """

    def __init__(
        self, log: Any, interval: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log = log
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def refused(self, event: str, **fields: Any) -> None:
        now = self._clock()
        last = self._last.get(event)
        if last is not None and now - last < self._interval:
            self._suppressed[event] = self._suppressed.get(event, 0) + 1
            return
        self._last[event] = now
        suppressed = self._suppressed.pop(event, 0)
        self._log.warning(event, suppressed=suppressed, **fields)
