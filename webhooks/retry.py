"""When to try again: the schedule, jitter and Retry-After, as pure functions.

Rules kept here:
- `schedule[i]` is the delay before attempt i+1; after `len(schedule)`
  failed attempts the delivery is a dead letter (kept, replayable).
- Jitter stretches or shrinks a scheduled delay by up to ±`jitter` of itself,
  so a fleet of retries does not land on a recovering receiver in one burst.
- Retry-After (429/503) is a floor, never a shortcut: the next attempt waits
  for max(jittered schedule, Retry-After), so a receiver that keeps answering
  "Retry-After: 1" cannot burn the whole attempt budget in seconds. It is
  clamped to `max_retry_after_s` so no receiver can park a message forever.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from webhooks.model import DeliveryPolicy


def next_delay(
    policy: DeliveryPolicy,
    attempts_made: int,
    rng: random.Random,
    retry_after_s: float | None = None,
) -> float | None:
    """Seconds to wait after `attempts_made` failed attempts, or None when the
    attempt budget is spent and the delivery must be dead-lettered."""
    if attempts_made >= policy.max_attempts:
        return None
    base = policy.schedule[attempts_made]
    delay = base * (1.0 + rng.uniform(-policy.jitter, policy.jitter)) if base else 0.0
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, policy.max_retry_after_s))
    return delay


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """RFC 9110 §10.2.3: delay-seconds or an HTTP-date. Garbage is ignored."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
