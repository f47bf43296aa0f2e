"""The application's view of a call: `IncomingCall` (UAS) and `OutgoingCall` (UAC).

These wrap a `Dialog` (dialog.py) and translate its states into awaitables
the call session can use without knowing SIP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from voicebot.sip.dialog import (
    CANCELLED,
    FAILED,
    LOCAL_BYE,
    REJECTED,
    Confirmed,
    Dialog,
    DialogHost,
    UacTrying,
    UasEarly,
    _consume,
    await_quietly,
)
from voicebot.sip.digest import DigestCredentials, DigestError, choose_challenge
from voicebot.sip.message import SipParseError, SipRequest, SipResponse, SipUri
from voicebot.sip.refer import ReferTransfer, TransferResult
from voicebot.sip.sdp import NegotiatedMedia, SdpParseError, build_answer, negotiate, parse_sdp
from voicebot.sip.transaction import TransactionTimeout
from voicebot.sip.transport import Address


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
    """An INVITE the bot sent (the UAC side): the callback dialler's legs and
    `voicebot simulate-call`. The dialog's UAC states (dialog.py) decide what
    each response means; this object keeps what the application awaits."""

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
        self.cancelling = False
        self._cancel_tx: asyncio.Future[SipResponse] | None = None
        self.ringing = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._answered: asyncio.Future[NegotiatedMedia] = loop.create_future()
        self._answered.add_done_callback(_consume)
        self.call_id: str = invite.call_id
        self.media: NegotiatedMedia | None = None
        self.ended: asyncio.Future[str] = dialog.ended
        self.on_info_key: Callable[[str], None] | None = None
        #: The final status that ended the INVITE, once it failed (486, 487, 408…).
        self.status: int | None = None
        self._task: asyncio.Task[None] | None = None
        dialog.deliver_key = self._deliver_key

    @property
    def dialog(self) -> Dialog:
        return self._dialog

    def _deliver_key(self, key: str) -> None:
        if self.on_info_key is not None:
            self.on_info_key(key)

    def _send_invite(self, invite: SipRequest) -> None:
        self._invite = invite
        self._dialog.transition(UacTrying(self))
        dialog = self._dialog
        tx = self._ua.transactions.client_transaction(
            invite, self._destination, on_response=lambda r: dialog.state.on_response(dialog, r)
        )
        self._task = asyncio.get_running_loop().create_task(self._await_final(tx.final))

    async def _await_final(self, final: asyncio.Future[SipResponse]) -> None:
        dialog = self._dialog
        try:
            response = await final
        except TransactionTimeout:
            dialog.state.on_timeout(dialog)
            return
        dialog.state.on_response(dialog, response)

    # ------------------------------------------------ what the UAC states report (UacCall)

    def provisional(self, response: SipResponse) -> None:
        if response.status in (180, 183):
            self.ringing.set()

    def authenticate(self, response: SipResponse) -> bool:
        """Send the INVITE again with credentials for this challenge; False if we cannot."""
        status = response.status
        if self._credentials is None or status in self._challenged:
            return False
        self._challenged.add(status)
        header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
        try:
            challenge = choose_challenge(response.headers.get_all(header))
        except DigestError:
            return False
        value = self._credentials.authorization(challenge, "INVITE", self._invite.uri)
        invite = self._dialog.new_request(
            "INVITE", body=self._invite.body, content_type="application/sdp"
        )
        invite.headers.set("Contact", self._invite.headers.get("Contact") or self._ua.contact())
        for name, field in self._invite.headers:
            if name.lower().startswith("x-") or name in (
                "Allow",
                "Authorization",
                "Proxy-Authorization",
            ):
                invite.headers.add(name, field)
        invite.uri = self._invite.uri
        invite.headers.set("Authorization" if status == 401 else "Proxy-Authorization", value)
        self._send_invite(invite)
        return True

    def answered(self, dialog: Dialog, response: SipResponse) -> None:
        media: NegotiatedMedia | None = None
        try:
            media = negotiate(parse_sdp(response.body), self._codecs)
        except SdpParseError:
            media = None
        if media is None:
            dialog.log.info("sip.outgoing_failed", status=488, reason="no usable SDP answer")
            dialog.send_bye(FAILED)
            self.status = 488
            self._answered.set_exception(CallFailed(488, "No usable SDP answer"))
            return
        self.media = media
        dialog.media = media
        self._answered.set_result(media)

    def failed(self, status: int, reason: str, why: str) -> None:
        self.status = status
        self._dialog.end(why)
        if not self._answered.done():
            self._answered.set_exception(CallFailed(status, reason))

    def send_cancel(self) -> None:
        invite = self._invite
        cancel = SipRequest(invite.headers.copy(), b"", method="CANCEL", uri=invite.uri)
        headers = cancel.headers
        headers.set("Via", invite.headers.get_all("Via")[0])
        headers.set("CSeq", f"{invite.cseq[0]} CANCEL")
        for name in ("Content-Type", "Contact", "Authorization", "Proxy-Authorization", "Allow"):
            headers.remove(name)
        for name, _ in list(headers):
            if name.lower().startswith("x-"):
                headers.remove(name)
        tx = self._ua.transactions.client_transaction(cancel, self._destination)
        tx.final.add_done_callback(_consume)
        self._cancel_tx = tx.final

    # ------------------------------------------------------------ the application's side

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

    async def refer(self, refer_to: str, timeout_s: float) -> TransferResult:
        """Transfer the far end to `refer_to` (a SIP URI) and follow it to the end
        (refer.py); the caller hangs up its own leg afterwards."""
        transfer = ReferTransfer(self._dialog, refer_to, referred_by=str(self._invite.from_.uri))
        return await transfer.run(timeout_s)

    async def cancel(self) -> None:
        """CANCEL the INVITE if it is still pending (§9.1); no-op otherwise.

        Before any provisional response the CANCEL waits for one; either way
        this returns once the INVITE has ended (487, or a crossing 200 ACKed
        and BYEd) or after a short bound.
        """
        state = self._dialog.state
        if not isinstance(state, UacTrying):
            return
        state.cancel(self._dialog)
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
