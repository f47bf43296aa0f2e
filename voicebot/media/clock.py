"""One media clock for every call: a single asyncio task, absolute deadlines.

Stock pyVoIP ran sleep-polling threads per call and paced with relative
sleeps, so every tick's processing time was added to the period (49.5
packets/s instead of 50) and calls drifted apart. Here tick *n* is due at
``t0 + n * interval`` on the loop's monotonic clock, so lateness never
accumulates. A small lag is caught up tick by tick; a lag beyond
`max_lag_ticks` (a stalled loop) is skipped, not burst, because a burst of
stale packets only overflows the far end's jitter buffer.

A tick runs in phases (`SEND`, `RECEIVE`, `ANALYSE`): every call's packet
goes out first, then the audio that came in is read, then it is analysed
(in-band DTMF). In subscription order alone, the in-band receiver (the
first call's subscription) ran its ~4 ms of analysis before most calls'
sends, and a send's time within the tick moved with how many calls had a
frame to analyse: jitter on every stream, measured as the send gap's p99.

Between two phases the clock lets the loop run what is ready (one turn,
`asyncio.sleep(0)`). At 500 talking calls with in-band detection a tick is
8-14 ms of work (sends 4, reads 3, analysis 2-3); anything that waited for
the loop meanwhile (a commit coming back from the database thread, a
webhook's reply, a SIP request) used to wait for the whole tick, and on the
way from a key to its webhook it waits several times. Now it waits for one
phase at most. The sends stay together at the start of the tick.

Between two ticks, when the loop is on time (never past the next tick's
due time), a mid-tick runs in two phases of its own (`MID_RECEIVE`,
`MID_ANALYSE`; `MID_PHASES`): the RTP receiver reads there too, and the
in-band detector analyses what it read, so a datagram that arrives after a
tick's receive phase (an RFC 4733 key, the frame that completes a tone)
waits about half a tick, not a whole one. It comes half-way between this
tick's read and the next tick's, not half-way between the ticks' starts:
the reads come after the sends (5 ms at 300 talking calls), so at the
midpoint of the ticks the wait was 5 ms on one side and 15 on the other,
and phones send at every phase of the tick (measured at 300 in-band calls:
a key reached the call 28.5-29 ms after its first tone packet, p50, where
20 ms is the tone's second packet).

`load` is the share of the interval the last tick's phases took. A
subscriber may skip optional work when it is high: the in-band receiver
leaves its mid-tick analysis to the next tick then (see
`voicebot.media.inband_receiver`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import structlog

from voicebot.logs import get_logger

#: Tick phases, run in this order: sends, then receives, then analysis.
SEND, RECEIVE, ANALYSE = 0, 1, 2
PHASES = (SEND, RECEIVE, ANALYSE)
#: Not phases of the tick: half-way between two ticks (see `MediaClock`), reads then analysis.
MID_RECEIVE, MID_ANALYSE = 3, 4
MID_PHASES = (MID_RECEIVE, MID_ANALYSE)
#: Slack left between the end of a mid-tick and the next tick's due time.
MID_TICK_MARGIN_S = 0.001


class Tickable(Protocol):
    def on_tick(self, tick_no: int) -> None:
        """Called once per tick on the event loop; must be fast and never block."""


class MediaClock:
    """Drives every subscribed `Tickable` from one task; starts with its first subscriber."""

    def __init__(
        self,
        interval: float = 0.020,
        max_lag_ticks: int = 5,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self.interval = interval
        self.max_lag_ticks = max_lag_ticks
        self.skipped_ticks = 0
        self._log = logger or get_logger(component="media_clock")
        # One insertion-ordered set per phase; `_subscribers` is the SEND phase's.
        self._subscribers: dict[Tickable, None] = {}
        self._phases: tuple[dict[Tickable, None], ...] = (self._subscribers, {}, {}, {}, {})
        self._task: asyncio.Task[None] | None = None
        self._mid_cost = 0.0  # seconds the last mid-tick took (decaying maximum)
        #: The share of the interval the last tick's phases took, from its first
        #: send to the end of its analysis (wall time: what ran between phases too).
        self.load = 0.0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self, tickable: Tickable, phase: int = SEND) -> None:
        """Tick `tickable` in `phase` (SEND, RECEIVE or ANALYSE; or MID_RECEIVE,
        MID_ANALYSE) from the next tick on."""
        self._phases[phase][tickable] = None
        self.start()

    def unsubscribe(self, tickable: Tickable) -> None:
        for subscribers in self._phases:
            subscribers.pop(tickable, None)

    @property
    def _subscribed(self) -> bool:
        return any(self._phases)

    def start(self) -> None:
        """Start the tick task if it is not running (needs a running loop)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="media-clock")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tick = 0
        # Idle with no subscribers costs nothing: the task ends, subscribe() restarts it.
        while self._subscribed:
            tick += 1
            delay = t0 + tick * self.interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > self.max_lag_ticks * self.interval:
                behind = int(-delay / self.interval)
                self.skipped_ticks += behind
                self._log.warning("media_clock.skipped", ticks=behind, lag_s=round(-delay, 3))
                tick += behind
            started = loop.time()
            self._run_phase(tick, SEND)
            read_at = loop.time()
            for phase in PHASES[1:]:  # receive, analyse
                if self._phases[phase]:
                    await asyncio.sleep(0)  # what is ready runs now, not after the tick
                    if phase == RECEIVE:
                        read_at = loop.time()
                    self._run_phase(tick, phase)
            self.load = (loop.time() - started) / self.interval
            if any(self._phases[phase] for phase in MID_PHASES):
                due = t0 + (tick + 1) * self.interval
                # Half-way between this tick's read and the next one's, which
                # comes after the next tick's sends (as long as this tick's), but
                # done before the next tick is due: its sends must not wait.
                mid_at = min(
                    (read_at + due + (read_at - started)) / 2,
                    due - self._mid_cost - MID_TICK_MARGIN_S,
                )
                mid = mid_at - loop.time()
                if mid > 0:
                    await asyncio.sleep(mid)
                began = loop.time()
                if began < due:  # late: the next tick's own receive reads it
                    for phase in MID_PHASES:
                        self._run_phase(tick, phase)
                    # The cost of the next one: the last, or half the one before when
                    # that was longer (one stalled mid-tick, a collection in it, is
                    # forgotten in a few ticks rather than moving every later one).
                    self._mid_cost = max(loop.time() - began, self._mid_cost * 0.5)

    def _run_phase(self, tick: int, phase: int) -> None:
        for tickable in list(self._phases[phase]):
            try:
                tickable.on_tick(tick)
            except Exception:
                # One broken call must not silence every other call on the clock.
                self._log.exception("media_clock.tick_failed", tickable=repr(tickable))
                self.unsubscribe(tickable)
