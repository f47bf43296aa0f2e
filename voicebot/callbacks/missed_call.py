"""A missed call the PBX sends to the bot over SIP (its failover route).

An INVITE is a missed call when it says `X-Call-Reason: missed`, or when its
request-URI user is one of `callbacks.missed_uri_users` and it does not say
`X-Call-Reason: post-call`. Without either it is a manager after a call: the
menu, as before. The client is `X-Client-Number`, else the From user.

The miss is put in the call log first (the call log's listener queues the
callback, as for a PBX event), then, per `callbacks.on_missed_call`:
`answer` plays "we will call you back shortly" and hangs up; `refuse` answers
480 Temporarily Unavailable without answering (the PBX then plays its own
message or voicemail). A database that refuses the record does not change
what the caller hears.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from voicebot.callbacks.prompts import CALLBACK_PROMISED
from voicebot.clock import Clock
from voicebot.journal.call_events import CallEvent
from voicebot.journal.calls import CallLog
from voicebot.logs import get_logger
from voicebot.media.clock import MediaClock
from voicebot.media.prompt_library import PromptLibrary
from voicebot.media.session import RtpPortPool, RtpPortsExhausted
from voicebot.sip.call import CallCancelled, CallEnded, IncomingCall
from voicebot.sip.media_session import call_rtp_session

MISSED_CALL_PROMPTS: tuple[str, ...] = (CALLBACK_PROMISED,)
#: Beyond the prompt's own length, how long to wait for it before hanging up.
PLAY_SLACK_S = 5.0


def is_missed_call(call: IncomingCall, missed_uri_users: Sequence[str]) -> bool:
    reason = (call.header("X-Call-Reason") or "").strip().lower()
    if reason == "missed":
        return True
    if reason == "post-call":
        return False
    return (call.request_user or "") in missed_uri_users


@dataclass(frozen=True, slots=True)
class MissedCallEnvironment:
    call_log: CallLog
    prompts: PromptLibrary
    ports: RtpPortPool
    media_clock: MediaClock
    clock: Clock
    on_missed_call: str  # "answer" | "refuse"


class MissedCallLine:
    """One missed call over SIP: record it, then play the promise or refuse."""

    def __init__(self, call: IncomingCall, env: MissedCallEnvironment) -> None:
        self._call = call
        self._env = env
        self.client = _clean(call.header("X-Client-Number")) or _clean(call.from_user)
        self.pbx_call_id = _clean(call.header("X-Call-ID")) or call.call_id
        self.log = get_logger(sip_call_id=call.call_id, pbx_call_id=self.pbx_call_id)

    async def run(self) -> None:
        self.log.info("call.missed", client_number=self.client, action=self._env.on_missed_call)
        await self._record()
        if self._env.on_missed_call == "refuse":
            with contextlib.suppress(CallCancelled, CallEnded):
                await self._call.reject(480, "Temporarily Unavailable")
            return
        await self._promise()

    async def _record(self) -> None:
        started = self._env.clock.now()
        fields: dict[str, Any] = {
            "call_id": self.pbx_call_id,
            "direction": "inbound",
            "caller": self.client,
            "callee": _clean(self._call.request_user) or _clean(self._call.to_user),
            "status": "missed",
            "started_at": started,
            # the extension that did not answer (the recipes send it)
            "manager": _clean(self._call.header("X-Manager")),
        }
        while True:
            try:
                event = CallEvent.model_validate(fields)
                break
            except ValidationError as error:
                # A header the PBX (or a stranger) filled with something that
                # is no number: the miss is kept without it, and said so.
                bad = sorted({str(e["loc"][0]) for e in error.errors() if e["loc"]})
                if not self._drop(fields, bad):
                    self.log.error("call_log.record_failed", fields=bad, reason="invalid")
                    return
                self.log.info("call.refused_header", fields=bad, reason="unreadable value")
        try:
            await self._env.call_log.record_call_event(event)
        except Exception as error:
            self.log.error("call_log.record_failed", error=repr(error))

    def _drop(self, fields: dict[str, Any], bad: list[str]) -> bool:
        """Leave out (or, for the call id, replace) the fields named `bad`;
        False when none of them can be: each is changed at most once."""
        changed = False
        for name in bad:
            if name in ("caller", "callee", "manager") and fields[name] is not None:
                fields[name] = None
                changed = True
            elif name == "call_id" and fields[name] != self._call.call_id:
                fields[name] = self._call.call_id
                changed = True
        return changed

    async def _promise(self) -> None:
        media = self._call.media
        try:
            endpoint = await self._env.ports.allocate()
        except RtpPortsExhausted as exc:
            self.log.warning("call.refused", reason="rtp_ports_exhausted", error=str(exc))
            with contextlib.suppress(CallCancelled, CallEnded):
                await self._call.reject(480, "Temporarily Unavailable")
            return
        session = call_rtp_session(
            endpoint, media, self._env.media_clock, learn_from=self._call.source[0], logger=self.log
        )
        try:
            try:
                await self._call.answer(endpoint.host, endpoint.port)
            except (CallCancelled, CallEnded):
                self.log.info("call.cancelled_before_answer")
                return
            await session.start()
            codec = session.codec
            frames = self._env.prompts.frames(CALLBACK_PROMISED, codec.name, codec.encode)
            played: asyncio.Future[None] = asyncio.get_running_loop().create_future()

            def finished() -> None:
                if not played.done():
                    played.set_result(None)

            session.player.play(frames, on_finished=finished)
            waits: set[asyncio.Future[Any]] = {played, self._call.ended}
            await asyncio.wait(
                waits,
                timeout=len(frames) * 0.02 + PLAY_SLACK_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not self._call.ended.done():
                await self._call.hangup()
                self.log.info("call.hung_up", reason="callback_promised")
        finally:
            await session.close()


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None
