"""The one clock (DESIGN.md §3): injectable so tests move time instead of sleeping.

`Clock` and `SystemClock` are the webhooks package's (it cannot import
voicebot, so the lower layer holds them); the tests' `ManualClock` lives in
`tests/clock.py`.
"""

from __future__ import annotations

from webhooks.model import Clock, SystemClock

__all__ = ["Clock", "SystemClock"]
