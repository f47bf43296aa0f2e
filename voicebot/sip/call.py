"""The application's view of a call: `IncomingCall` (UAS) and `OutgoingCall` (UAC).

These wrap a `Dialog` (dialog.py) and translate its states into awaitables
the call session can use without knowing SIP.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from voicebot.sip.dialog import (
    CANCELLED,
    LOCAL_BYE,
    REJECTED,
    Confirmed,
    Dialog,
    DialogHost,
    UacProceeding,
    UacTrying,
    UasEarly,
    _consume,
    await_quietly,
)
from voicebot.sip.digest import DigestCredentials, DigestError, choose_challenge
from voicebot.sip.message import (
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    split_list,
)
from voicebot.sip.sdp import NegotiatedMedia, SdpParseError, build_answer, negotiate, parse_sdp
from voicebot.sip.transaction import TransactionTimeout
from voicebot.sip.transport import Address

FAILED = "failed"


class CallCancelled(Exception):
    """The caller CANCELled before we answered; the call is never answered."""


class CallEnded(Exception):
    """The call ended (`reason` is the `ended` value) before the operation finished."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"call already ended: {reason}")
        self.reason = reason


class CallFailed(Exception):
    """An outgoing INVITE got a final non-2xx response (or none: 408)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}".strip())
        self.status = status
        self.reason = reason


def _uri_user(uri: str) -> str | None:
    try:
        return SipUri.parse(uri).user
    except (SipParseError, ValueError):
        return None


class IncomingCall:
    """An INVITE the bot received and may answer (the UAS side)."""

    def __init__(
        self, dialog: Dialog, invite: SipRequest, source: Address, media: NegotiatedMedia
    ) -> None:
        self._dialog = dialog
        self._invite = invite
        self.call_id: str = invite.call_id
        self.source: tuple[str, int] = source
        caller = invite.from_
        self.from_user: str | None = caller.uri.user
        self.from_display: str | None = caller.display
        self.to_user: str | None = invite.to.uri.user
        # The request-URI's user: whom the PBX sent the call to ("missed" marks
        # a missed call for callbacks), which the To header may not say.
        self.request_user: str | None = _uri_user(invite.uri)
        self.media: NegotiatedMedia = media
        self.on_info_key: Callable[[str], None] | None = None
        self.ended: asyncio.Future[str] = dialog.ended
        dialog.media = media
        dialog.deliver_key = self._deliver_key

    def header(self, name: str) -> str | None:
        """A header of the INVITE, by case-insensitive name ("X-Manager"); None if absent."""
        return self._invite.headers.get(name)

    def _deliver_key(self, key: str) -> None:
        if self.on_info_key is not None:
            self.on_info_key(key)

    def _ensure_early(self) -> UasEarly:
        state = self._dialog.state
        if isinstance(state, UasEarly):
            return state
        reason = self.ended.result() if self.ended.done() else state.name
        if reason == CANCELLED:
            raise CallCancelled(self.call_id)
        raise CallEnded(reason)

    async def answer(self, local_rtp_host: str, local_rtp_port: int) -> None:
        """Send 200 with our SDP answer and return once the caller's ACK arrives.

        Raises `CallCancelled` if the caller cancelled first (nothing is sent),
        `CallEnded` if the call ended before the ACK (BYE, or no ACK in 64·T1).
        """
        state = self._ensure_early()
        sdp = build_answer(self.media, local_rtp_host, local_rtp_port)
        state.answer(self._dialog, sdp)
        self._dialog.log.info("sip.answered", rtp=f"{local_rtp_host}:{local_rtp_port}")
        confirmed = self._dialog.confirmed
        waits: list[asyncio.Future[Any]] = [confirmed, self.ended]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not (confirmed.done() and not confirmed.cancelled()):
            raise CallEnded(self.ended.result())

    async def reject(self, status: int, reason: str | None = None) -> None:
        """Answer the INVITE with a final non-2xx `status` (e.g. 486); ends the call."""
        if not 300 <= status <= 699:
            raise ValueError(f"reject needs a 3xx-6xx status, got {status}")
        self._ensure_early().reject(self._dialog, status, reason, REJECTED)

    async def hangup(self) -> None:
        """End the call from our side (BYE once up; 480 before answer). Idempotent."""
        if self.ended.done():
            return
        waitable = self._dialog.state.hangup(self._dialog, LOCAL_BYE)
        if waitable is not None:
            await await_quietly(waitable)


class OutgoingCall:
    """An INVITE the bot sent (the UAC side, used by `voicebot simulate-call`)."""

    def __init__(
        self,
        ua: DialogHost,
        dialog: Dialog,
        invite: SipRequest,
        destination: Address,
        codecs: list[str],
        credentials: DigestCredentials | None,
    ) -> None:
        self._ua = ua
        self._dialog = dialog
        self._invite = invite
        self._destination = destination
        self.peer_host: str = destination[0]
        self._codecs = codecs
        self._credentials = credentials
        self._challenged: set[int] = set()
        self._cancelling = False
        self._ack: bytes | None = None
        self._provisional = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._answered: asyncio.Future[NegotiatedMedia] = loop.create_future()
        self._answered.add_done_callback(_consume)
        self.call_id: str = invite.call_id
        self.media: NegotiatedMedia | None = None
        self.ended: asyncio.Future[str] = dialog.ended
        self._task: asyncio.Task[None] | None = None

    def _send_invite(self, invite: SipRequest) -> None:
        self._invite = invite
        self._dialog.transition(UacTrying())
        tx = self._ua.transactions.client_transaction(
            invite, self._destination, on_response=self._on_response
        )
        self._task = asyncio.get_running_loop().create_task(self._await_final(tx.final))

    def _on_response(self, response: SipResponse) -> None:
        if response.status < 200:
            if isinstance(self._dialog.state, UacTrying) and not isinstance(
                self._dialog.state, UacProceeding
            ):
                self._dialog.transition(UacProceeding())
            self._provisional.set()
        elif response.status < 300 and self._ack is not None:
            self._ua.send(self._ack, self._dialog.destination())  # our ACK was lost

    async def _await_final(self, final: asyncio.Future[SipResponse]) -> None:
        try:
            response = await final
        except TransactionTimeout:
            self._fail(408, "Request Timeout", FAILED)
            return
        status = response.status
        if 200 <= status < 300:
            self._accepted(response)
        elif status in (401, 407) and self._credentials and status not in self._challenged:
            self._challenged.add(status)
            self._authenticate(response)
        else:
            why = CANCELLED if status == 487 and self._cancelling else (REJECTED)
            self._fail(status, response.reason, why)

    def _authenticate(self, response: SipResponse) -> None:
        assert self._credentials is not None
        header = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        try:
            challenge = choose_challenge(response.headers.get_all(header))
        except DigestError:
            self._fail(response.status, response.reason, REJECTED)
            return
        value = self._credentials.authorization(challenge, "INVITE", self._invite.uri)
        invite = self._dialog.new_request(
            "INVITE", body=self._invite.body, content_type="application/sdp"
        )
        for name, field in self._invite.headers:
            if name.lower().startswith("x-") or name in ("Authorization", "Proxy-Authorization"):
                invite.headers.add(name, field)
        invite.uri = self._invite.uri
        invite.headers.set(
            "Authorization" if response.status == 401 else "Proxy-Authorization", value
        )
        self._send_invite(invite)

    def _accepted(self, response: SipResponse) -> None:
        dialog = self._dialog
        dialog.remote_tag = response.to.tag
        contact = response.headers.get("Contact")
        if contact:
            with contextlib.suppress(SipParseError):
                dialog.remote_target = NameAddr.parse(split_list(contact)[0]).uri
        dialog.route_set = list(reversed(response.headers.get_all("Record-Route")))
        ack = dialog.new_request("ACK", cseq=self._invite.cseq[0])
        self._ack = bytes(ack)
        self._ua.send(self._ack, dialog.destination())
        self._ua.remember(dialog)
        dialog.transition(Confirmed())
        if not dialog.confirmed.done():
            dialog.confirmed.set_result(None)
        if self._cancelling:  # 200 crossed our CANCEL (§9.1): ACK it, then BYE
            dialog.send_bye(CANCELLED)
            self._answered.set_exception(CallFailed(487, "Request Terminated"))
            return
        media: NegotiatedMedia | None = None
        try:
            media = negotiate(parse_sdp(response.body), self._codecs)
        except SdpParseError:
            media = None
        if media is None:
            dialog.send_bye(FAILED)
            self._answered.set_exception(CallFailed(488, "No usable SDP answer"))
            return
        self.media = media
        dialog.media = media
        self._answered.set_result(media)

    def _fail(self, status: int, reason: str, why: str) -> None:
        self._dialog.end(why)
        if not self._answered.done():
            self._answered.set_exception(CallFailed(status, reason))

    async def wait_answered(self, timeout: float | None = None) -> NegotiatedMedia:
        """Wait for the 200 (ACK is sent for you); raise `CallFailed` on a final error.

        On `timeout` the INVITE is CANCELled and TimeoutError raised.
        """
        try:
            return await asyncio.wait_for(asyncio.shield(self._answered), timeout)
        except TimeoutError:
            await self.cancel()
            raise

    async def send_info_key(self, key: str) -> None:
        """Send one keypad key as SIP INFO application/dtmf-relay; raises on non-2xx."""
        if not isinstance(self._dialog.state, Confirmed):
            raise CallEnded(self.ended.result() if self.ended.done() else self._dialog.state.name)
        body = f"Signal={key}\r\nDuration=160\r\n".encode()
        info = self._dialog.new_request("INFO", body=body, content_type="application/dtmf-relay")
        response = await self._ua.transactions.request(info, self._dialog.destination())
        if response.status >= 300:
            raise CallFailed(response.status, response.reason)

    async def cancel(self) -> None:
        """CANCEL the INVITE if it is still pending (§9.1); no-op otherwise."""
        if not isinstance(self._dialog.state, UacTrying) or self._cancelling:
            return
        self._cancelling = True
        invite = self._invite
        cancel = SipRequest(invite.headers.copy(), b"", method="CANCEL", uri=invite.uri)
        headers = cancel.headers
        headers.set("Via", invite.headers.get_all("Via")[0])
        headers.set("CSeq", f"{invite.cseq[0]} CANCEL")
        for name in ("Content-Type", "Contact", "Authorization", "Proxy-Authorization"):
            headers.remove(name)
        for name, _ in list(headers):
            if name.lower().startswith("x-"):
                headers.remove(name)
        tx = self._ua.transactions.client_transaction(cancel, self._destination)
        await await_quietly(tx.final)
        await await_quietly(self._dialog.ended)

    async def hangup(self) -> None:
        """BYE when up, CANCEL while ringing; idempotent."""
        if self.ended.done():
            return
        if isinstance(self._dialog.state, UacTrying):
            await self.cancel()
            return
        waitable = self._dialog.state.hangup(self._dialog, LOCAL_BYE)
        if waitable is not None:
            await await_quietly(waitable)

    def _shutdown(self, reason: str) -> Any:
        return self._dialog.state.hangup(self._dialog, reason)
