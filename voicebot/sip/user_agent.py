"""The bot's SIP user agent: wiring of transport, transactions, dialogs, registration.

Out-of-dialog requests are decided here (who may call us, what we answer to
OPTIONS/CANCEL/REFER…); in-dialog requests go to their `Dialog`, whose state
decides. In mode "register" a `Registration` task keeps us registered; in
mode "peer" the PBX sends INVITEs straight to bind_host:bind_port.

Refusals come in a fixed order, each before any work for the next: a source
outside `allowed_peers` is refused before its datagram is parsed (403 to the
packet's source, or nothing with `unknown_peer = "drop"`), a source over its
INVITE rate gets a stateless 503, and beyond `max_calls` calls (ringing,
answered, or waiting for an ACK: each holds an RTP port) a 503 with
Retry-After. None of these sends 100 Trying first. Before that 503, a full
house sheds the call whose 200 has waited longest for its ACK, once that
wait is past `ACK_OVERDUE_T1`·T1 (the 200 sent four times): RFC 3261 lets
an un-ACKed 200 hold its call (and RTP port) for 64·T1 = 32 s, so a caller
that never ACKs (a flood, a broken NAT) would otherwise lock every call
out for half a minute. It gets the BYE §13.3.1.4 sends after 64·T1, sooner. Every request that gets
past them gets a final response whatever its handler raises (400 for what
the parser refuses late, 500 for our bugs), so no transaction is left open.

An accepted INVITE is handed to the application (`on_incoming_call(call)`,
a plain call) and the UA keeps no task for it: the application owns its
calls, so it decides how they end when it stops. `refuse_new_calls()` is the
first step of that stop: every INVITE after it gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from voicebot.clock import Clock, SystemClock
from voicebot.logs import get_logger
from voicebot.refusal_log import RefusalLog
from voicebot.settings import SipSettings
from voicebot.sip.admission import SourceLimiter
from voicebot.sip.call import CallCancelled, CallEnded, CallFailed, IncomingCall, OutgoingCall
from voicebot.sip.capabilities import ALLOW, options_response, unsupported_response
from voicebot.sip.dialog import (
    ACK_TIMEOUT,
    REJECTED,
    SHUTDOWN,
    Dialog,
    UasAnswered,
    UasEarly,
    await_quietly,
)
from voicebot.sip.digest import DigestCredentials
from voicebot.sip.message import (
    NameAddr,
    SipParseError,
    SipRequest,
    SipResponse,
    SipUri,
    Via,
    build_response,
    new_branch,
    new_call_id,
    new_tag,
    parse_message,
    split_list,
)
from voicebot.sip.registration import Registration
from voicebot.sip.sdp import SUPPORTED_CODECS, SdpParseError, build_offer, negotiate, parse_sdp
from voicebot.sip.transaction import (
    ServerInviteTransaction,
    ServerTransaction,
    TransactionKey,
    TransactionLayer,
)
from voicebot.sip.transport import Address, SipTransport

__all__ = [
    "CallCancelled",
    "CallEnded",
    "CallFailed",
    "IncomingCall",
    "OutgoingCall",
    "SipCounters",
    "UserAgent",
]

#: Takes over an incoming call; must not block (start a task to run it).
IncomingCallHandler = Callable[[IncomingCall], None]
DialogKey = tuple[str, str, str | None]

#: Retry-After (s) on a 503 for max_calls: about one short menu call.
OVERLOAD_RETRY_AFTER_S = 10
#: Retry-After (s) on a 503 for a source over its INVITE rate.
RATE_RETRY_AFTER_S = 2
#: An un-ACKed 200 this many T1 old (4 s by default) may be shed for a new call.
ACK_OVERDUE_T1 = 8
FAILED = "failed"


@dataclass
class SipCounters:
    """What the user agent refused or could not handle, since start (for /metrics)."""

    peer_refused: int = 0  # requests from outside allowed_peers (answered 403 or dropped)
    rate_limited: int = 0  # INVITEs over sip.invite_rate_per_source
    overloaded: int = 0  # INVITEs beyond sip.max_calls (503)
    unacked_shed: int = 0  # answered calls ended (BYE) for a new INVITE: their ACK overdue
    replies_suppressed: int = 0  # stateless refusals not sent: the source's reply budget was spent
    bad_requests: int = 0  # requests refused 400 after parsing (bad From/To…)
    handler_errors: int = 0  # requests answered 500 because our code raised

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


class UserAgent:
    """One SIP endpoint: answers INVITEs for the bot, places calls for the simulator."""

    def __init__(
        self,
        settings: SipSettings,
        on_incoming_call: IncomingCallHandler,
        *,
        logger: Any = None,
        t1: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self._clock: Clock = clock or SystemClock()
        self.user_agent = settings.user_agent
        self._on_incoming_call = on_incoming_call
        self._log = (logger or get_logger()).bind(component="sip")
        self._t1 = t1
        self._transport: SipTransport | None = None
        self._transactions: TransactionLayer | None = None
        self._dialogs: dict[DialogKey, Dialog] = {}
        self._early: dict[TransactionKey, Dialog] = {}  # INVITE transaction -> dialog, for CANCEL
        self._incoming: set[Dialog] = set()  # UAS calls not ended: what max_calls counts
        self._outgoing: list[OutgoingCall] = []
        self._refuse_retry_after: int | None = None  # set: answer INVITEs 503
        self._allowed = settings.allowed_networks()
        self._advertised_host = settings.public_host or settings.bind_host
        self.registration: Registration | None = None
        self.counters = SipCounters()
        self.max_calls = settings.call_limit
        rate, burst = settings.invite_rate_per_source, settings.invite_burst_per_source
        self._invites = SourceLimiter(rate, burst)
        # Stateless refusals (403/503) to one address: as many as INVITEs it may send.
        self._replies = SourceLimiter(rate, burst)
        self._refusals = RefusalLog(self._log)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Bind the UDP socket and start registering (mode register); never waits on the PBX."""
        s = self.settings
        self._transport = await SipTransport.open(
            s.bind_host,
            s.bind_port,
            self._on_request,
            self._on_response,
            screen=self._screen,
            logger=self._log,
        )
        if self._t1:
            self._transactions = TransactionLayer(self._transport, t1=self._t1, logger=self._log)
        else:
            self._transactions = TransactionLayer(self._transport, logger=self._log)
        if not s.public_host and s.bind_host in ("0.0.0.0", "::", ""):
            self._advertised_host = _outbound_ip(s.server)
        self._log.info(
            "sip.listening", address=f"{self.local_address[0]}:{self.local_address[1]}", mode=s.mode
        )
        if s.mode == "register":
            self.registration = Registration(
                s,
                send=self._transactions.request,
                contact=self.contact_address,
                logger=self._log,
                clock=self._clock,
            )
            self.registration.start()

    def refuse_new_calls(self, retry_after_s: int) -> None:
        """From now on answer every new INVITE 503 Service Unavailable with
        `Retry-After: retry_after_s` (RFC 3261 §21.5.4): the bot is stopping."""
        self._refuse_retry_after = max(0, int(retry_after_s))

    async def stop(self) -> None:
        """BYE any call still up (the application ends its own first),
        un-register, close the socket."""
        if self._refuse_retry_after is None:
            self._refuse_retry_after = 0
        waits = []
        for dialog in list(self._dialogs.values()) + list(self._early.values()):
            waitable = dialog.state.hangup(dialog, SHUTDOWN)
            if waitable is not None:
                waits.append(await_quietly(waitable, 1.0))
            dialog.end(SHUTDOWN)
        for call in self._outgoing:
            if not call.ended.done():
                waits.append(call.hangup())
        if waits:
            await asyncio.gather(*waits, return_exceptions=True)
        if self.registration is not None:
            await self.registration.stop()
        if self._transactions is not None:
            self._transactions.close()
        if self._transport is not None:
            self._transport.close()
        self._log.info("sip.stopped")

    @property
    def local_address(self) -> tuple[str, int]:
        """(host, port) the UDP socket is bound to (the real port when bind_port is 0)."""
        if self._transport is None:
            raise RuntimeError("UserAgent not started")
        return self._transport.local_address

    @property
    def contact_address(self) -> Address:
        return self._advertised_host, self.local_address[1]

    @property
    def transactions(self) -> TransactionLayer:
        if self._transactions is None:
            raise RuntimeError("UserAgent not started")
        return self._transactions

    # ---------------------------------------------------------------- DialogHost

    def contact(self) -> str:
        host, port = self.contact_address
        return str(
            NameAddr(SipUri(host=host, port=port, user=self.settings.username or "voicebot"))
        )

    def via(self) -> str:
        host, port = self.contact_address
        return str(Via(host=host, port=port, params={"branch": new_branch(), "rport": None}))

    def send(self, data: bytes, destination: Address) -> None:
        if self._transport is not None:
            self._transport.send(data, destination)

    def remember(self, dialog: Dialog) -> None:
        self._dialogs[dialog.key] = dialog

    def forget(self, dialog: Dialog) -> None:
        if self._dialogs.get(dialog.key) is dialog:
            del self._dialogs[dialog.key]
        self._incoming.discard(dialog)
        for key, early in list(self._early.items()):
            if early is dialog:
                del self._early[key]

    @property
    def calls_in_progress(self) -> int:
        """Incoming calls not ended (ringing, answered, waiting for ACK, up)."""
        return len(self._incoming)

    # ---------------------------------------------------------------- refusals

    def _screen(self, data: bytes, source: Address) -> bool:
        """First look at every datagram, before parsing: may this source talk to us?"""
        if data.startswith(b"SIP/") or self._is_allowed(source[0]):
            return True  # responses match only our own unguessable branches
        self.counters.peer_refused += 1
        if self.settings.unknown_peer == "drop":
            self._refusals.refused("sip.peer_refused", source=source[0], answer="dropped")
            return False
        try:
            request = parse_message(data)
        except SipParseError:
            request = None
        if isinstance(request, SipRequest) and request.method != "ACK":
            self._refuse_stateless(request, source, 403)
        self._refusals.refused("sip.peer_refused", source=source[0], answer=403)
        return False

    def _refuse_stateless(
        self, request: SipRequest, source: Address, status: int, retry_after: int | None = None
    ) -> None:
        """One response, no transaction, to the packet's source only (never a Via address),
        within the source's reply budget."""
        if not self._replies.allow(source[0]):
            self.counters.replies_suppressed += 1
            return
        headers = [("Retry-After", str(retry_after))] if retry_after else []
        # No To tag on a 400: the To header may be what could not be parsed.
        tag = new_tag() if status != 400 else None
        response = build_response(request, status, to_tag=tag, headers=headers)
        self.send(bytes(response), source)

    def _admit_invite(self, invite: SipRequest, source: Address) -> bool:
        """Rate and capacity checks for a new INVITE, before any transaction or 100."""
        if not self._invites.allow(source[0]):
            self.counters.rate_limited += 1
            self._refusals.refused(
                "sip.invite_rate_limited", source=source[0], sip_call_id=invite.call_id
            )
            self._refuse_stateless(invite, source, 503, RATE_RETRY_AFTER_S)
            return False
        if self._refuse_retry_after is not None:
            self._refuse_invite(invite, source, self._refuse_retry_after, reason="stopping")
            return False
        if len(self._incoming) >= self.max_calls and not self._shed_unacked():
            self.counters.overloaded += 1
            self._refuse_invite(
                invite, source, OVERLOAD_RETRY_AFTER_S, reason="max_calls", max_calls=self.max_calls
            )
            return False
        return True

    def _refuse_invite(
        self, invite: SipRequest, source: Address, retry_after: int, **why: object
    ) -> None:
        """503 with Retry-After through a server transaction (so a retransmitted
        INVITE gets the same answer), logged as one `sip.invite_refused` line."""
        self._refusals.refused(
            "sip.invite_refused", **why, source=source[0], sip_call_id=invite.call_id
        )
        tx = self.transactions.server_transaction(invite, source, trying=False)
        headers = [("Retry-After", str(retry_after))]
        tx.respond(build_response(invite, 503, to_tag=new_tag(), headers=headers))

    def _shed_unacked(self) -> bool:
        """Full house: BYE the answered call whose ACK is the most overdue, if
        one is past ACK_OVERDUE_T1·T1; True when a place was freed."""
        layer = self.transactions
        now = layer.loop.time()
        oldest: Dialog | None = None
        since = now - ACK_OVERDUE_T1 * layer.t1
        for dialog in self._incoming:
            state = dialog.state
            if isinstance(state, UasAnswered) and state.since <= since:
                oldest, since = dialog, state.since
        if oldest is None:
            return False
        self.counters.unacked_shed += 1
        self._refusals.refused(
            "sip.unacked_call_shed",
            sip_call_id=oldest.call_id,
            source=oldest.peer[0] if oldest.peer else None,
            waited_s=round(now - since, 1),
        )
        oldest.send_bye(ACK_TIMEOUT)
        return True

    # ---------------------------------------------------------------- incoming

    def _on_request(self, request: SipRequest, source: Address) -> None:
        layer = self.transactions
        try:
            if layer.absorb(request):
                return
            if request.method == "ACK":
                dialog = self._find_dialog(request)
                if dialog is not None:
                    dialog.receive_request(request, None)
                return  # an ACK nobody waits for is dropped (§17.2.3)
            new_invite = request.method == "INVITE" and request.to.tag is None
        except SipParseError as exc:  # From/To unreadable (an RFC 2543 key needs them)
            self.counters.bad_requests += 1
            self._log.info("sip.request_refused", status=400, error=str(exc)[:200])
            if request.method != "ACK":
                self._refuse_stateless(request, source, 400)
            return
        if new_invite and not self._admit_invite(request, source):
            return
        tx = layer.server_transaction(request, source)
        try:
            self._dispatch(request, source, tx)
        except SipParseError as exc:
            self.counters.bad_requests += 1
            self._log.info(
                "sip.request_refused", status=400, sip_call_id=request.call_id, error=str(exc)[:200]
            )
            self._settle(tx, build_response(request, 400, f"Bad Request ({exc})"[:100]))
        except Exception as exc:
            # A bug of ours, not the peer's: still a final answer and a closed
            # transaction, so the peer stops retransmitting and nothing leaks.
            self.counters.handler_errors += 1
            self._log.error(
                "sip.request_failed",
                method=request.method,
                sip_call_id=request.call_id,
                error=f"{type(exc).__name__}: {exc}"[:200],
            )
            self._settle(tx, build_response(request, 500))

    def _settle(self, tx: ServerTransaction, response: SipResponse) -> None:
        """Final answer for a request whose handler raised; ends a half-made call."""
        dialog = self._early.get(tx.key)
        if dialog is not None:
            dialog.end(FAILED)
        if not tx.final_sent:
            tx.respond(response)

    def _find_dialog(self, request: SipRequest) -> Dialog | None:
        to_tag = request.to.tag
        if to_tag is None:
            return None
        return self._dialogs.get((request.call_id, to_tag, request.from_.tag))

    def _dispatch(self, request: SipRequest, source: Address, tx: ServerTransaction) -> None:
        method = request.method
        if method == "CANCEL":
            self._cancel(request, tx)
            return
        if request.to.tag is not None:
            dialog = self._find_dialog(request)
            if dialog is not None:
                dialog.receive_request(request, tx)
            elif method == "OPTIONS":
                tx.respond(options_response(request, None))
            else:
                tx.respond(build_response(request, 481))
            return
        tag = new_tag()
        if method == "INVITE":
            self._incoming_invite(request, source, tx)
        elif method == "OPTIONS":
            tx.respond(options_response(request, tag))
        elif method in ("BYE", "INFO"):
            tx.respond(build_response(request, 481, to_tag=tag))
        else:
            tx.respond(unsupported_response(request, tag))

    def _cancel(self, cancel: SipRequest, tx: ServerTransaction) -> None:
        invite_tx = self.transactions.find_invite(cancel)
        if invite_tx is None:
            tx.respond(build_response(cancel, 481))
            return
        dialog = self._early.get(invite_tx.key)
        tx.respond(build_response(cancel, 200, to_tag=dialog.local_tag if dialog else None))
        if dialog is not None and isinstance(dialog.state, UasEarly):
            dialog.log.info("sip.cancelled")
            dialog.state.cancel(dialog)

    def _is_allowed(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if any(address in network for network in self._allowed):
            return True
        registrar = self.registration.registrar_address if self.registration else None
        if registrar is not None and registrar[0] == ip:
            return True
        # The far end of a call we placed (simulate-call) may send BYE.
        return any(call.peer_host == ip for call in self._outgoing if not call.ended.done())

    def _incoming_invite(self, invite: SipRequest, source: Address, tx: ServerTransaction) -> None:
        log = self._log.bind(sip_call_id=invite.call_id)
        from_ = invite.from_
        to = invite.to
        tag = new_tag()
        media = None
        if invite.body and invite.content_type in ("application/sdp", ""):
            try:
                media = negotiate(parse_sdp(invite.body))
            except SdpParseError as exc:
                log.info("sip.bad_sdp", error=str(exc)[:200])
        if media is None:
            log.info("sip.invite_refused", reason="no_usable_media", status=488)
            tx.respond(
                build_response(
                    invite,
                    488,
                    to_tag=tag,
                    headers=[
                        ("Warning", f'305 {self._advertised_host} "Incompatible media format"'),
                        ("Accept", "application/sdp"),
                    ],
                )
            )
            return
        contact = invite.headers.get("Contact")
        target = from_.uri
        if contact:
            target = NameAddr.parse(split_list(contact)[0]).uri
        dialog = Dialog(
            self,
            call_id=invite.call_id,
            local_tag=tag,
            remote_tag=from_.tag,
            local_party=NameAddr(to.uri, to.display),
            remote_party=NameAddr(from_.uri, from_.display),
            remote_target=target,
            remote_cseq=invite.cseq[0],
            local_cseq=0,
            route_set=invite.headers.get_all("Record-Route"),
            peer=source,
            logger=log,
        )
        assert isinstance(tx, ServerInviteTransaction)
        dialog.transition(UasEarly(tx))
        self._dialogs[dialog.key] = dialog
        self._early[tx.key] = dialog
        self._incoming.add(dialog)
        call = IncomingCall(dialog, invite, source, media)
        log.info(
            "sip.incoming_call",
            source=f"{source[0]}:{source[1]}",
            from_user=call.from_user,
            to_user=call.to_user,
            codec=media.codec_name,
        )
        try:
            self._on_incoming_call(call)
        except Exception:
            log.exception("sip.call_handoff_failed")
            if isinstance(dialog.state, UasEarly):
                dialog.state.reject(dialog, 500, None, REJECTED)

    def _on_response(self, response: SipResponse, source: Address) -> None:
        if not self.transactions.receive_response(response):
            self._log.debug(
                "sip.stray_response", status=response.status, sip_call_id=response.call_id
            )

    # ---------------------------------------------------------------- outgoing

    def invite(
        self,
        target: str,
        *,
        from_user: str,
        headers: dict[str, str] | None = None,
        local_rtp: tuple[str, int],
        codecs: list[str] | None = None,
        outbound_proxy: Address | None = None,
        from_host: str | None = None,
    ) -> OutgoingCall:
        """Place a call to `target` ("sip:bot@host:port" or "host:port"); see OutgoingCall.

        `outbound_proxy`: where the INVITE goes if not to the target's host
        (the registrar in register mode); `from_host`: the From URI's host
        (our AOR's domain there), else our own address.
        """
        uri = _target_uri(target)
        destination = outbound_proxy or (uri.host, uri.port or 5060)
        codecs = codecs or list(SUPPORTED_CODECS)
        host, port = self.contact_address
        call_id = new_call_id(host)
        if from_host:
            local = NameAddr(SipUri(host=from_host, user=from_user))
        else:
            local = NameAddr(SipUri(host=host, port=port, user=from_user))
        log = self._log.bind(sip_call_id=call_id)
        dialog = Dialog(
            self,
            call_id=call_id,
            local_tag=new_tag(),
            local_party=local,
            remote_party=NameAddr(uri),
            remote_target=uri,
            local_cseq=1,
            logger=log,
        )
        offer = build_offer(local_rtp[0], local_rtp[1], codecs)
        invite = dialog.new_request("INVITE", body=offer, content_type="application/sdp", cseq=1)
        invite.headers.set("Contact", str(NameAddr(SipUri(host=host, port=port, user=from_user))))
        invite.headers.add("Allow", ALLOW)
        for name, value in (headers or {}).items():
            invite.headers.add(name, value)
        s = self.settings
        credentials = None
        if s.username and s.password:
            credentials = DigestCredentials(s.username, s.password.get_secret_value())
        call = OutgoingCall(self, dialog, invite, destination, codecs, credentials)
        self._outgoing = [c for c in self._outgoing if not c.ended.done()] + [call]
        log.info("sip.outgoing_call", target=str(uri))
        call._send_invite(invite)
        return call


def _target_uri(target: str) -> SipUri:
    text = target.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if text.lower().startswith(("sip:", "sips:")):
        return SipUri.parse(text)
    return SipUri.parse("sip:" + text)


def _outbound_ip(server: str | None) -> str:
    """The local IP the kernel would use towards `server` (for Contact when bound to 0.0.0.0)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect((server or "192.0.2.1", 9))  # no packet is sent for UDP connect
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()
