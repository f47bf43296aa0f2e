"""Bridge mode (`callbacks.transfer = "bridge"`): the bot connects the two legs itself.

For PBXs that refuse REFER. Given a leg that is up (the manager who pressed
1, or the client in `client_first` order), place the other leg through the
same dialler (401/407 and the ring timeout with CANCEL are the dialler's),
let the waiting party hear ringback meanwhile, then relay RTP between the
two (`voicebot.media.bridge.MediaBridge`: PCMU↔PCMA when the legs differ)
until either side hangs up; the bot then BYEs the other side.

Outcomes: the other leg busy (486/600) is `client_busy`; unanswered (ring
timeout, 408/480/487) is `client_no_answer`; any other refusal, or the
waiting party hanging up before the other answered, is `failed`. Once the
two were bridged it is `completed`, with `talk_s` the bridged time.

This module knows the dialler only through the small Protocols below, so
the import goes one way: the dialler imports the bridge, never the reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol, runtime_checkable

from voicebot.callbacks.attempt import AttemptResult, Outcome
from voicebot.logs import get_logger
from voicebot.media.bridge import MediaBridge
from voicebot.media.g711 import Codec
from voicebot.media.session import RtpSession
from voicebot.media.tone import ringback_frames

#: A bridged call longer than this is ended by the bot (a leg whose BYE got lost
#: would otherwise hold the job in `dialling` for ever).
MAX_BRIDGE_S = 4 * 3600.0
#: Ringback is generated for this long; the dialler's ring timeout ends it sooner.
RINGBACK_S = 300.0


@runtime_checkable
class Leg(Protocol):
    """An answered call with its RTP session running (the dialler's `AnsweredLeg`)."""

    target: str
    session: RtpSession
    codec: Codec

    @property
    def ended(self) -> asyncio.Future[str]: ...

    async def hangup(self) -> None:
        """BYE (idempotent) and close the session."""


class RingFailure(Protocol):
    """A leg that was not answered: its final SIP status (None: rang out)."""

    status: int | None
    detail: str


class LegPlacer(Protocol):
    """Rings one user and returns the answered leg, or why not (the dialler's `place`)."""

    async def place(
        self, user: str, *, stop: asyncio.Event | None = None, log: Any = None
    ) -> Any: ...


def client_outcome(status: int | None) -> Outcome:
    """Ringing the other leg failed with `status`: 486/600 busy; none, 408, 480 or 487
    not answered; anything else failed."""
    if status in (486, 600):
        return Outcome.CLIENT_BUSY
    if status is None or status in (408, 480, 487):
        return Outcome.CLIENT_NO_ANSWER
    return Outcome.FAILED


async def connect_by_bridge(
    leg: Leg,
    other: str,
    *,
    dialler: LegPlacer,
    log: Any = None,
    max_s: float = MAX_BRIDGE_S,
) -> AttemptResult:
    """Place `other`, bridge it to `leg` until one side hangs up; never raises for outcomes.

    Both legs are hung up (BYE) and their sessions closed when this returns,
    whatever the outcome, and also when the task is cancelled.
    """
    log = (log or get_logger()).bind(leg=leg.target, other=other)
    stop = asyncio.Event()
    leg.ended.add_done_callback(lambda _: stop.set())
    codec = leg.codec
    leg.session.player.play(ringback_frames(codec.name, codec.encode, RINGBACK_S))
    placed: Any = None
    try:
        placed = await dialler.place(other, stop=stop, log=log)
        leg.session.player.stop()
        if not isinstance(placed, Leg):
            return _not_answered(leg, other, placed, log)
        if leg.ended.done():
            log.info("callback.bridge_failed", reason="hung up before the other side answered")
            return AttemptResult(
                Outcome.FAILED, other, 200, detail=f"{leg.target} hung up as {other} answered"
            )
        return await _bridged(leg, placed, other, log, max_s)
    finally:
        await leg.hangup()
        if isinstance(placed, Leg):
            await placed.hangup()


def _not_answered(leg: Leg, other: str, failure: RingFailure, log: Any) -> AttemptResult:
    if leg.ended.done():
        log.info("callback.bridge_failed", reason="hung up while the other side rang")
        return AttemptResult(
            Outcome.FAILED,
            other,
            failure.status,
            detail=f"{leg.target} hung up while {other} rang",
        )
    outcome = client_outcome(failure.status)
    log.info("callback.bridge_failed", reason=outcome.value, status=failure.status)
    return AttemptResult(outcome, other, failure.status, detail=f"{other}: {failure.detail}")


async def _bridged(leg: Leg, placed: Leg, other: str, log: Any, max_s: float) -> AttemptResult:
    loop = asyncio.get_running_loop()
    media = MediaBridge(leg.session, placed.session)
    media.start()
    started = loop.time()
    log.info("callback.bridged", codecs=f"{leg.codec.name}/{placed.codec.name}")
    try:
        await asyncio.wait(
            {leg.ended, placed.ended}, timeout=max_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        media.stop()
    talk_s = round(loop.time() - started, 3)
    if leg.ended.done():
        ended_by = leg.target
    elif placed.ended.done():
        ended_by = other
    else:
        ended_by = "bot (max_s)"
    forward, back = media.a_to_b.stats, media.b_to_a.stats
    log.info(
        "callback.bridge_ended",
        talk_s=talk_s,
        ended_by=ended_by,
        relayed=forward.played,
        relayed_back=back.played,
        lost=forward.lost + back.lost,
        late=forward.late + back.late,
    )
    with contextlib.suppress(Exception):
        await asyncio.gather(leg.hangup(), placed.hangup())
    return AttemptResult(
        Outcome.COMPLETED,
        other,
        200,
        talk_s,
        detail=f"bridged {talk_s:.0f} s, {ended_by} hung up",
    )


#: The name the dialler calls (`voicebot.callbacks.dialler.SipDialler._bridge`).
bridge = connect_by_bridge
