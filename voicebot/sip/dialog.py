"""SIP dialogs (RFC 3261 §12-15), one small class per state, after sippy/b2bua.

Theory of operation: a `Dialog` holds what RFC 3261 §12 says a dialog is
(Call-ID, tags, CSeqs, remote target, route set) plus its current state
object. The user agent hands it every request that matches its tags; the
state handles only what is valid in it and everything else falls through to
`DialogState` (481/405/501). States:

UAS: UasEarly (INVITE received, not answered) -> UasAnswered (200 sent,
     retransmitted until ACK, BYE after 64·T1 without one) -> Confirmed.
UAC: UacTrying (INVITE sent) -> UacProceeding (1xx seen) -> Confirmed; the
     UAC states get the INVITE's responses (`on_response`) and decide: ACK a
     2xx, re-send on 401/407, fail on 3xx-6xx, CANCEL once ringing.
Any -> Terminated, which answers 481 to whatever still arrives.

The `ended` future resolves once, with why the dialog ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from ivr import KEYPAD
from voicebot.sip.capabilities import (
    ALLOW,
    SUPPORTED,
    options_response,
    unsupported_response,
)
from voicebot.sip.message import (
    Headers,
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    build_response,
    split_list,
)
from voicebot.sip.sdp import NegotiatedMedia, SdpParseError, negotiate, parse_sdp
from voicebot.sip.transaction import (
    Retransmitter,
    ServerInviteTransaction,
    ServerTransaction,
    Timer,
    TransactionLayer,
    TransactionTimeout,
)
from voicebot.sip.transport import Address, response_destination

DTMF_KEYS = KEYPAD  # the one keypad, defined in ivr
BYE_TIMEOUT = 2.0

# ended reasons
REMOTE_BYE = "remote_bye"
LOCAL_BYE = "local_bye"
CANCELLED = "cancelled"
ACK_TIMEOUT = "ack_timeout"
SHUTDOWN = "shutdown"
REJECTED = "rejected"
FAILED = "failed"


class DialogHost(Protocol):
    """What a dialog (and an `OutgoingCall`) needs from its user agent."""

    user_agent: str

    @property
    def transactions(self) -> TransactionLayer: ...

    def contact(self) -> str: ...
    def via(self) -> str: ...
    def send(self, data: bytes, destination: Address) -> None: ...
    def remember(self, dialog: Dialog) -> None: ...
    def forget(self, dialog: Dialog) -> None: ...


def info_key(request: SipRequest) -> str | None:
    """The key in a SIP INFO body: application/dtmf-relay ("Signal=5") or application/dtmf."""
    text = request.body.decode("utf-8", "replace").strip()
    if request.content_type == "application/dtmf-relay":
        for line in text.splitlines():
            name, _, value = line.partition("=")
            if name.strip().lower() == "signal":
                text = value.strip()
                break
        else:
            return None
    elif request.content_type != "application/dtmf":
        return None
    text = {"10": "*", "11": "#"}.get(text, text).upper()
    return text if text in DTMF_KEYS else None


class Dialog:
    """One call leg's SIP dialog and its current state."""

    def __init__(
        self,
        host: DialogHost,
        *,
        call_id: str,
        local_tag: str,
        local_party: NameAddr,
        remote_party: NameAddr,
        remote_target: SipUri,
        remote_tag: str | None = None,
        local_cseq: int = 1,
        remote_cseq: int | None = None,
        route_set: list[str] | None = None,
        peer: Address | None = None,
        logger: Any,
    ) -> None:
        self.host = host
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.local_party = local_party
        self.remote_party = remote_party
        self.remote_target = remote_target
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.route_set = route_set or []
        self.peer = peer
        self.log = logger
        self.local_sdp: bytes | None = None
        self.media: NegotiatedMedia | None = None
        self.deliver_key: Callable[[str], None] | None = None
        #: Takes an in-dialog NOTIFY, returns the status to answer it with (refer.py).
        self.on_notify: Callable[[SipRequest], int] | None = None
        loop = asyncio.get_running_loop()
        self.ended: asyncio.Future[str] = loop.create_future()
        self.confirmed: asyncio.Future[None] = loop.create_future()
        self.state: DialogState = Terminated()

    @property
    def key(self) -> tuple[str, str, str | None]:
        return self.call_id, self.local_tag, self.remote_tag

    def transition(self, state: DialogState) -> None:
        self.log.debug("dialog.state_changed", old=self.state.name, new=state.name)
        self.state.leave()
        self.state = state
        state.enter(self)

    def end(self, reason: str) -> None:
        if not isinstance(self.state, Terminated):
            self.transition(Terminated())
        self.host.forget(self)
        # Ended, it takes no more keys: the call's handler (a bound method of the
        # IncomingCall or OutgoingCall, which holds this dialog) goes, so the call
        # is not kept in a reference cycle until a full garbage collection pass
        # (30-108 ms under churn, bench/README.md).
        self.deliver_key = None
        if not self.ended.done():
            self.log.info("dialog.ended", reason=reason)
            self.ended.set_result(reason)
        if not self.confirmed.done():
            self.confirmed.cancel()

    def receive_request(self, request: SipRequest, tx: ServerTransaction | None) -> None:
        if request.method != "ACK":
            number = request.cseq[0]
            if self.remote_cseq is not None and number < self.remote_cseq and tx is not None:
                tx.respond(build_response(request, 500, "CSeq Out of Order", to_tag=self.local_tag))
                return
            self.remote_cseq = number
        self.state.on_request(self, request, tx)

    # ---------------------------------------------------------------- sending

    def destination(self) -> Address:
        """First Route hop (loose routing) or the remote target (§12.2.1.1)."""
        uri = self.remote_target
        if self.route_set:
            with contextlib.suppress(SipParseError):
                uri = NameAddr.parse(self.route_set[0]).uri
        return uri.host, uri.port or 5060

    def new_request(
        self,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        cseq: int | None = None,
    ) -> SipRequest:
        """A request within the dialog (§12.2.1.1); ACK and CANCEL pass their CSeq."""
        if cseq is None:
            self.local_cseq += 1
            cseq = self.local_cseq
        remote = self.remote_party
        if self.remote_tag:
            remote = remote.with_tag(self.remote_tag)
        headers = Headers(
            [
                ("Via", self.host.via()),
                ("Max-Forwards", "70"),
                ("From", str(self.local_party.with_tag(self.local_tag))),
                ("To", str(remote)),
                ("Call-ID", self.call_id),
                ("CSeq", f"{cseq} {method}"),
            ]
        )
        for route in self.route_set:
            headers.add("Route", route)
        if method not in ("ACK", "CANCEL"):
            headers.add("Contact", self.host.contact())
            headers.add("User-Agent", self.host.user_agent)
        if content_type:
            headers.add("Content-Type", content_type)
        return SipRequest(headers, body, method=method, uri=str(self.remote_target))

    def send_bye(self, reason: str) -> asyncio.Future[SipResponse]:
        """Send BYE and end the dialog now; the returned future is the BYE's response."""
        bye = self.new_request("BYE")
        tx = self.host.transactions.client_transaction(bye, self.destination())
        tx.final.add_done_callback(_consume)
        self.end(reason)
        return tx.final

    def respond(
        self, tx: ServerTransaction | None, request: SipRequest, status: int, **kw: Any
    ) -> None:
        if tx is not None:
            tx.respond(build_response(request, status, to_tag=self.local_tag, **kw))


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def await_quietly(future: asyncio.Future[Any], timeout: float = BYE_TIMEOUT) -> None:
    with contextlib.suppress(TimeoutError, TransactionTimeout):
        await asyncio.wait_for(asyncio.shield(future), timeout)


# ===================================================================== states


class DialogState:
    """Fallback for requests a state does not handle."""

    name = "base"

    def enter(self, dialog: Dialog) -> None:
        pass

    def leave(self) -> None:
        pass

    def on_request(self, dialog: Dialog, request: SipRequest, tx: ServerTransaction | None) -> None:
        method = request.method
        if method == "ACK" or tx is None:
            return
        if method == "OPTIONS":
            tx.respond(options_response(request, dialog.local_tag))
        elif method in ("BYE", "INFO", "INVITE", "CANCEL"):
            dialog.respond(tx, request, 481)
        else:
            tx.respond(unsupported_response(request, dialog.local_tag))

    def hangup(self, dialog: Dialog, reason: str) -> asyncio.Future[Any] | None:
        """End the call from our side; returns what to wait for, if anything."""
        return None

    def on_response(self, dialog: Dialog, response: SipResponse) -> None:
        """A response to our INVITE that this state has no use for (a late 1xx)."""

    def on_timeout(self, dialog: Dialog) -> None:
        """Our INVITE got no final response; only the UAC states care."""


class Terminated(DialogState):
    name = "terminated"

    def on_request(self, dialog: Dialog, request: SipRequest, tx: ServerTransaction | None) -> None:
        if tx is not None and request.method != "ACK":
            dialog.respond(tx, request, 481)


class UasEarly(DialogState):
    """INVITE received and 100 sent; the application has not answered yet."""

    name = "uas_early"

    def __init__(self, invite_tx: ServerInviteTransaction) -> None:
        self.tx = invite_tx

    def answer(self, dialog: Dialog, sdp: bytes) -> None:
        dialog.local_sdp = sdp
        response = build_response(
            self.tx.request,
            200,
            to_tag=dialog.local_tag,
            headers=[
                ("Contact", dialog.host.contact()),
                ("Allow", ALLOW),
                ("Supported", SUPPORTED),
                ("Server", dialog.host.user_agent),
            ],
            body=sdp,
            content_type="application/sdp",
        )
        for route in self.tx.request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", route)
        self.tx.respond(response)
        dialog.transition(UasAnswered(response))

    def reject(self, dialog: Dialog, status: int, reason: str | None, why: str) -> None:
        self.tx.respond(build_response(self.tx.request, status, reason, to_tag=dialog.local_tag))
        dialog.end(why)

    def cancel(self, dialog: Dialog) -> None:
        """CANCEL matched our INVITE (§9.2): 487 for the INVITE, never answered."""
        self.reject(dialog, 487, None, CANCELLED)

    def hangup(self, dialog: Dialog, reason: str) -> asyncio.Future[Any] | None:
        status = 503 if reason == SHUTDOWN else 480
        self.reject(dialog, status, None, reason)
        return None


class UasAnswered(DialogState):
    """200 sent; retransmitted at T1, 2·T1 … T2 until the ACK (§13.3.1.4)."""

    name = "uas_answered"

    def __init__(self, response: SipResponse) -> None:
        self.response = response
        self.bye_reason: str | None = None
        self._retransmitter: Retransmitter | None = None
        self._give_up = Timer()
        self._dialog: Dialog | None = None
        self.since = 0.0  # loop time the 200 was first sent: how overdue its ACK is

    def enter(self, dialog: Dialog) -> None:
        self._dialog = dialog
        layer = dialog.host.transactions
        self.since = layer.loop.time()
        data = bytes(self.response)
        where = response_destination(self.response)
        self._retransmitter = Retransmitter(
            layer.loop, layer.t1, 4.0, lambda: dialog.host.send(data, where)
        )
        self._give_up.start(layer.loop, layer.loop.time() + 64 * layer.t1, self._no_ack)

    def leave(self) -> None:
        if self._retransmitter is not None:
            self._retransmitter.cancel()
        self._give_up.cancel()

    def _no_ack(self) -> None:
        dialog = self._dialog
        assert dialog is not None
        dialog.log.warning("dialog.ack_timeout")
        dialog.send_bye(ACK_TIMEOUT)

    def on_request(self, dialog: Dialog, request: SipRequest, tx: ServerTransaction | None) -> None:
        if request.method == "ACK":
            dialog.transition(Confirmed())
            if not dialog.confirmed.done():
                dialog.confirmed.set_result(None)
            if self.bye_reason is not None:
                dialog.send_bye(self.bye_reason)
        elif request.method in ("BYE", "INFO"):
            Confirmed().on_request(dialog, request, tx)
        elif request.method == "INVITE":
            dialog.respond(tx, request, 491)
        else:
            super().on_request(dialog, request, tx)

    def hangup(self, dialog: Dialog, reason: str) -> asyncio.Future[Any] | None:
        # §15: no BYE before the ACK for our 2xx (or its timeout); send it then.
        if reason == SHUTDOWN:
            return dialog.send_bye(reason)
        self.bye_reason = reason
        return dialog.ended


class Confirmed(DialogState):
    """The call is up (both sides). As UAC it holds its ACK, sent again for
    every retransmission of the 2xx (the ACK was lost)."""

    name = "confirmed"

    def __init__(self, ack: bytes | None = None) -> None:
        self.ack = ack

    def on_response(self, dialog: Dialog, response: SipResponse) -> None:
        if self.ack is not None and 200 <= response.status < 300:
            dialog.host.send(self.ack, dialog.destination())

    def on_request(self, dialog: Dialog, request: SipRequest, tx: ServerTransaction | None) -> None:
        method = request.method
        if method == "ACK":
            return
        if method == "BYE":
            dialog.respond(tx, request, 200)
            dialog.end(REMOTE_BYE)
        elif method == "INFO":
            dialog.respond(tx, request, 200)
            key = info_key(request)
            if key is not None and dialog.deliver_key is not None:
                dialog.log.info("dialog.info_key", key=key)
                dialog.deliver_key(key)
        elif method == "INVITE":
            self._reinvite(dialog, request, tx)
        elif method == "NOTIFY" and dialog.on_notify is not None:
            # A subscription of ours (REFER's implicit one, RFC 3515 §2.4.4) decides.
            status = dialog.on_notify(request)
            dialog.respond(tx, request, status)
        elif method == "NOTIFY":
            dialog.respond(tx, request, 481)  # no subscription (RFC 6665 §4.1.3)
        else:
            super().on_request(dialog, request, tx)

    def _reinvite(self, dialog: Dialog, request: SipRequest, tx: ServerTransaction | None) -> None:
        """Session refresh / re-target: same answer, new remote address if it moved."""
        if request.body and dialog.media is not None:
            try:
                media = negotiate(parse_sdp(request.body), [dialog.media.codec_name])
            except SdpParseError:
                media = None
            if media is None:
                dialog.respond(tx, request, 488, headers=[("Accept", "application/sdp")])
                return
            dialog.media.remote_host, dialog.media.remote_port = (
                media.remote_host,
                media.remote_port,
            )
        contact = request.headers.get("Contact")
        if contact:
            with contextlib.suppress(SipParseError):
                dialog.remote_target = NameAddr.parse(split_list(contact)[0]).uri
        dialog.respond(
            tx,
            request,
            200,
            headers=[("Contact", dialog.host.contact()), ("Allow", ALLOW)],
            body=dialog.local_sdp or b"",
            content_type="application/sdp" if dialog.local_sdp else None,
        )

    def hangup(self, dialog: Dialog, reason: str) -> asyncio.Future[Any] | None:
        return dialog.send_bye(reason)


class UacCall(Protocol):
    """What the UAC states report to (`OutgoingCall`): they decide, it keeps the futures."""

    cancelling: bool

    def provisional(self, response: SipResponse) -> None: ...
    def answered(self, dialog: Dialog, response: SipResponse) -> None: ...
    def authenticate(self, response: SipResponse) -> bool: ...
    def failed(self, status: int, reason: str, why: str) -> None: ...
    def send_cancel(self) -> None: ...


class UacTrying(DialogState):
    """INVITE sent, nothing back yet. Decides what each response to it means:

    1xx -> UacProceeding; 2xx -> ACK (to the 2xx's To tag, its Contact, its
    Record-Route reversed) and Confirmed; 401/407 -> the INVITE again with
    credentials (once per kind), else like any 3xx-6xx: the call fails with
    that status; no final response (timer B) -> 408.
    A CANCEL asked for here waits for the first provisional (RFC 3261 §9.1).
    """

    name = "uac_trying"

    def __init__(self, call: UacCall) -> None:
        self.call = call
        self.cancel_pending = False

    def on_response(self, dialog: Dialog, response: SipResponse) -> None:
        status = response.status
        if status < 200:
            self.provisional(dialog, response)
        elif status < 300:
            self.accept(dialog, response)
        elif status in (401, 407) and not self.call.cancelling and self.call.authenticate(response):
            dialog.log.info("sip.challenged", status=status)
        else:
            why = CANCELLED if status == 487 and self.call.cancelling else REJECTED
            dialog.log.info("sip.outgoing_failed", status=status, reason=response.reason)
            self.call.failed(status, response.reason, why)

    def on_timeout(self, dialog: Dialog) -> None:
        dialog.log.info("sip.outgoing_failed", status=408, reason="no final response")
        self.call.failed(408, "Request Timeout", FAILED)

    def provisional(self, dialog: Dialog, response: SipResponse) -> None:
        proceeding = UacProceeding(self.call)
        dialog.transition(proceeding)
        self.call.provisional(response)
        if self.cancel_pending:
            proceeding.cancel(dialog)

    def cancel(self, dialog: Dialog) -> None:
        """No provisional yet: the CANCEL goes out when one arrives (§9.1)."""
        self.call.cancelling = True
        self.cancel_pending = True

    def accept(self, dialog: Dialog, response: SipResponse) -> None:
        dialog.remote_tag = response.to.tag
        contact = response.headers.get("Contact")
        if contact:
            with contextlib.suppress(SipParseError):
                dialog.remote_target = NameAddr.parse(split_list(contact)[0]).uri
        dialog.route_set = list(reversed(response.headers.get_all("Record-Route")))
        ack = dialog.new_request("ACK", cseq=response.cseq[0])
        data = bytes(ack)
        dialog.host.send(data, dialog.destination())
        dialog.host.remember(dialog)
        dialog.transition(Confirmed(ack=data))
        if not dialog.confirmed.done():
            dialog.confirmed.set_result(None)
        if self.call.cancelling:  # the 2xx crossed our CANCEL (§9.1): ACK it, then BYE
            dialog.send_bye(CANCELLED)
            self.call.failed(487, "Request Terminated", CANCELLED)
            return
        self.call.answered(dialog, response)

    def hangup(self, dialog: Dialog, reason: str) -> asyncio.Future[Any] | None:
        self.cancel(dialog)
        return dialog.ended


class UacProceeding(UacTrying):
    """A provisional response arrived; CANCEL is now allowed (§9.1)."""

    name = "uac_proceeding"

    def provisional(self, dialog: Dialog, response: SipResponse) -> None:
        self.call.provisional(response)

    def cancel(self, dialog: Dialog) -> None:
        if self.cancel_pending and self.call.cancelling:
            return
        self.call.cancelling = True
        self.cancel_pending = True
        dialog.log.info("sip.cancel_sent")
        self.call.send_cancel()
