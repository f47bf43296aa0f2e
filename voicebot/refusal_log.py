"""Expected refusals (a stranger's INVITE, a flood, foreign RTP) as log lines a
flood cannot multiply: the SIP user agent and the RTP sessions both use it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


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
