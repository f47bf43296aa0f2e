"""The small value types the rest of the package speaks in.

Nothing here knows about SIP, the menu or `voicebot`: an endpoint is a URL
with secrets and an event filter, a policy is a set of numbers, a clock is
anything with `monotonic()` and `now()`.
"""

from __future__ import annotations

import fnmatch
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

# The Standard Webhooks spec's example schedule, in seconds after the previous
# attempt: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
# Element i is the delay before attempt i+1, so len(schedule) is the number of
# attempts a delivery gets before it is dead-lettered.
STANDARD_SCHEDULE: tuple[float, ...] = (
    0,
    5,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    24 * 3600,
)


class Clock(Protocol):
    """The clock everything schedules by (voicebot re-exports it as `voicebot.clock`);
    tests pass a manual clock and move time."""

    def monotonic(self) -> float: ...
    def now(self) -> datetime: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class Endpoint:
    """One receiver. `secrets` are `whsec_<base64>`; more than one during a
    rotation, and every one of them signs each request. `events` filters by
    event type: exact names, `*` for all, or shell-style patterns (`call.*`)."""

    url: str
    secrets: list[str] = field(repr=False)  # never in logs or tracebacks
    events: list[str] = field(default_factory=lambda: ["*"])

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError(f"endpoint {self.url}: at least one secret is needed")
        for secret in self.secrets:
            if not secret.startswith("whsec_"):
                raise ValueError(f"endpoint {self.url}: secrets take the form whsec_<base64>")

    def wants(self, event_type: str) -> bool:
        return any(
            pattern == "*" or pattern == event_type or fnmatch.fnmatchcase(event_type, pattern)
            for pattern in self.events
        )


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_s: float = 15.0
    schedule: tuple[float, ...] = STANDARD_SCHEDULE
    # Each scheduled delay is stretched or shrunk by up to this fraction so that
    # a receiver coming back from an outage is not hit by every retry at once.
    jitter: float = 0.1
    concurrency_per_endpoint: int = 4
    retention_s: float = 7 * 86400
    # Retry-After above this is clamped: a receiver cannot park a message forever.
    max_retry_after_s: float = 24 * 3600

    def __post_init__(self) -> None:
        if not self.schedule:
            raise ValueError("schedule needs at least one attempt")
        if any(delay < 0 for delay in self.schedule):
            raise ValueError("schedule delays must be >= 0")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")
        if self.concurrency_per_endpoint < 1:
            raise ValueError("concurrency_per_endpoint must be >= 1")

    @property
    def max_attempts(self) -> int:
        return len(self.schedule)


@dataclass
class DispatcherMetrics:
    """Counters since start; the application exposes them on /metrics."""

    attempts: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    dead_lettered: int = 0
    endpoints_disabled: int = 0
    recovered_in_flight: int = 0
    pruned: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)
