"""Counts the domain keeps as it works, read by `GET /metrics` at scrape time.

The calls own their counters and the API reads them, never the reverse:
nothing under `voicebot/` outside `voicebot/api/` imports the API to count.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CallCounters:
    """Post-call menu counters since start."""

    answered: int = 0
    confirmed: int = 0
    incomplete: int = 0
    failed: int = 0
    keys_rfc4733: int = 0
    keys_info: int = 0
    keys_inband: int = 0
    rtp_malformed: int = 0
    rtp_refused: int = 0  # RTP from a source the call does not take media from
