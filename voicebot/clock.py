"""The one clock (DESIGN.md §3): injectable so tests move time instead of sleeping.

`Clock` and `SystemClock` are the webhooks package's (it cannot import
voicebot, so the lower layer holds them); `ManualClock` is for tests.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from webhooks.model import Clock, SystemClock

__all__ = ["Clock", "ManualClock", "SystemClock"]


class ManualClock:
    """A clock tests advance by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self._mono = 1000.0
        self._wall = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        return self._wall + timedelta(seconds=self._mono - 1000.0)

    def advance(self, seconds: float) -> None:
        self._mono += seconds
