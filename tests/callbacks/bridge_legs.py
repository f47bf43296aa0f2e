"""Outgoing legs for the bridge tests, placed on the bot's real `UserAgent`.

`LegPlacer` is the part of the SIP dialler that `connect_by_bridge` uses
(`place(user, stop=...)`): an INVITE from the bot's user agent (401/407 and
CANCEL are `OutgoingCall`'s), a ring timeout, and on answer an `RtpSession`
on the shared media clock. It lets the bridge be tested on its own; the
dialler's own `place` is tested with the dialler.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from voicebot.media.clock import MediaClock
from voicebot.media.g711 import CODECS, Codec
from voicebot.media.session import RtpPortPool, RtpSession
from voicebot.sip.call import CallFailed, OutgoingCall
from voicebot.sip.user_agent import UserAgent


class Leg:
    """An answered call with its RTP session running (`voicebot.callbacks.bridge.Leg`)."""

    def __init__(self, target: str, call: OutgoingCall, session: RtpSession) -> None:
        self.target = target
        self.call = call
        self.session = session
        self.codec: Codec = session.codec

    @property
    def ended(self) -> asyncio.Future[str]:
        return self.call.ended

    async def hangup(self) -> None:
        with contextlib.suppress(Exception):
            await self.call.hangup()
        await self.session.close()


@dataclass
class RingFailure:
    status: int | None
    detail: str


@dataclass
class LegPlacer:
    ua: UserAgent
    clock: MediaClock
    ports: RtpPortPool
    ring_timeout_s: float = 8.0

    async def place(
        self, user: str, *, stop: asyncio.Event | None = None, log: Any = None
    ) -> Leg | RingFailure:
        endpoint = await self.ports.allocate()
        call = self.ua.invite(user, from_user="bot", local_rtp=(endpoint.host, endpoint.port))
        answered = asyncio.ensure_future(call.wait_answered(None))
        stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
        waits: set[asyncio.Future[Any]] = {answered} | ({stopper} if stopper else set())
        await asyncio.wait(waits, timeout=self.ring_timeout_s, return_when=asyncio.FIRST_COMPLETED)
        if stopper is not None:
            stopper.cancel()
        if not answered.done():
            answered.cancel()
            await call.cancel()
            endpoint.close()
            return RingFailure(None, "rang out")
        try:
            media = answered.result()
        except CallFailed as failed:
            endpoint.close()
            return RingFailure(failed.status, f"{failed.status} {failed.reason}")
        session = RtpSession(
            endpoint,
            media.remote_rtp,
            CODECS[media.codec_name],
            self.clock,
            dtmf_payload_type=media.telephone_event_pt,
            learn_from=(call.peer_host,),
        )
        await session.start()
        return Leg(user, call, session)
