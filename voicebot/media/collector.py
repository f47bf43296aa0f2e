"""Full garbage collections wait for a moment without media.

CPython's cyclic collector runs a full pass (generation 2) over every object
it tracks once enough long-lived ones have piled up: with the default
thresholds, after 10 middle-generation passes, when the long-lived objects
grew by a quarter since the last full pass. Calls that come and go are
exactly that growth. At 500 talking calls a full pass over their ~50 000
tracked objects (tasks, timers, SIP messages, sessions) took 21-44 ms and
collected next to nothing (0-6 000 objects): the media clock's worst stall,
a late packet on every call. Measured with bench/stage_trace.py
(BENCH_TRACE_TICKS, whose own records are the growth that triggers it: one
full pass inside each 10 s window, max send gap 31-63 ms; with full passes
deferred, none, max 23-30 ms). The plain bench has no turnover inside its
window (every call starts together), so it shows none either way; a bot up
all day at that load would.

So, while the bot runs:

* `FullCollections.defer()` makes the full pass wait for `FULL_EVERY`
  middle-generation passes instead of 10 (the bench's 500 calls make 19
  middle passes in 10 s: about 9 minutes instead of 5 s). The young and
  middle generations are unchanged (0.2 and 1.5-3 ms passes); cyclic garbage
  that reaches the old generation waits longer, bounded by that count.
* `FullCollections.when_idle()` runs the full pass itself when the media
  clock has just stopped for want of calls (the last call's media ended), at
  most once per `min_interval_s`. Then no call's media waits for it (after
  the bench's 500 calls it took 23-53 ms, freeing what they left; start-up
  objects are frozen by the app, `gc.freeze()`, and never looked at).
* `FullCollections.restore()` puts the thresholds back (the app's stop).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

#: Middle-generation passes before a full one (CPython's default is 10).
FULL_EVERY = 1000
#: A full collection when media goes idle at most this often.
MIN_INTERVAL_S = 10.0


class FullCollections:
    """Where and when the collector's full passes run; see the module docstring."""

    def __init__(
        self,
        min_interval_s: float = MIN_INTERVAL_S,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.min_interval_s = min_interval_s
        self._now = now
        self._last: float | None = None
        self._saved: tuple[int, int, int] | None = None
        #: Full passes run by `when_idle`.
        self.idle_collections = 0

    def defer(self) -> None:
        """Full passes after `FULL_EVERY` middle ones; the rest as they were."""
        if self._saved is None:
            self._saved = gc.get_threshold()
        young, middle, _ = self._saved
        gc.set_threshold(young, middle, FULL_EVERY)

    def restore(self) -> None:
        if self._saved is not None:
            gc.set_threshold(*self._saved)
            self._saved = None

    def when_idle(self) -> None:
        """The media clock stopped with no call left: a full pass now, if the
        last one was `min_interval_s` ago or more."""
        now = self._now()
        if self._last is not None and now - self._last < self.min_interval_s:
            return
        self._last = now
        gc.collect()
        self.idle_collections += 1
