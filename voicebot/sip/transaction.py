"""SIP transactions over UDP (RFC 3261 §17, RFC 6026).

Theory of operation: the transaction layer sits between the transport and
the user agent. It matches requests to server transactions as RFC 3261
§17.2.3 says: by (top Via branch, sent-by, method) when the branch carries
the z9hG4bK cookie, else (an RFC 2543 peer) by Request-URI, To tag, From
tag, Call-ID, CSeq number and top Via — two branch-less INVITEs used to share
the key ("", INVITE) and the second got the first call's answer. A CANCEL
has the INVITE's branch but its own method, so it is its own transaction and
`find_invite` finds the INVITE it cancels. Responses match client
transactions by (branch, CSeq method) (§17.1.3); our branches always carry
the cookie. It absorbs retransmitted requests (re-sending the last response),
retransmits requests until a response arrives (timers A/E), gives up (B/F)
and lingers to absorb stragglers (D/H/I/J/K/L). Every timer fires at an
absolute deadline on the loop's monotonic clock (`loop.call_at`), so a late
callback never pushes the next one later.

What it never does: dialog matching, 2xx retransmission and the ACK for a
2xx — those are the dialog layer's (RFC 3261 §13.3.1.4, §13.2.2.4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from voicebot.logs import get_logger
from voicebot.sip.message import (
    BRANCH_MAGIC,
    Headers,
    SipRequest,
    SipResponse,
    build_response,
)
from voicebot.sip.transport import Address, response_destination

T1 = 0.5  # RTT estimate (§17.1.1.1)
T2 = 4.0  # max retransmit interval for non-INVITE requests and INVITE responses
T4 = 5.0  # max time a message stays in the network

TransactionKey = tuple[object, ...]  # what identifies one transaction; ends with the method


def server_key(request: SipRequest, method: str | None = None) -> TransactionKey:
    """The §17.2.3 matching key of a request, as if its method were `method`.

    ACK and CANCEL look up their INVITE with method="INVITE". For an RFC 2543
    peer the To tag is part of the key, except for an ACK, whose To tag is the
    one our response added (`TransactionLayer.absorb` checks that separately).
    """
    via = request.top_via
    method = method or request.method
    branch = via.branch or ""
    sent_by = (via.host.lower(), via.port or 5060)
    if branch.startswith(BRANCH_MAGIC):
        return (branch, sent_by, method)
    to_tag = None if request.method == "ACK" else request.to.tag
    return (
        "rfc2543",
        request.uri,
        to_tag,
        request.from_.tag,
        request.call_id,
        request.cseq[0],
        branch,
        sent_by,
        method,
    )


class TransactionTimeout(Exception):
    """No final response before timer B/F fired (a 408 in RFC terms)."""


class DatagramSender(Protocol):
    def send(self, data: bytes, destination: Address) -> None: ...


class Timer:
    """One pending `loop.call_at`, cancellable."""

    __slots__ = ("_handle",)

    def __init__(self) -> None:
        self._handle: asyncio.TimerHandle | None = None

    def start(
        self, loop: asyncio.AbstractEventLoop, deadline: float, cb: Callable[[], None]
    ) -> None:
        self.cancel()
        self._handle = loop.call_at(deadline, cb)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Retransmitter:
    """Re-sends at T1, 2·T1, 4·T1 … capped at `cap` after the first send (timers A/E/G).

    Deadlines are absolute: each is the previous deadline plus the interval.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        t1: float,
        cap: float | None,
        send: Callable[[], None],
    ) -> None:
        self._loop = loop
        self._interval = t1
        self._cap = cap
        self._send = send
        self._timer = Timer()
        self._deadline = loop.time() + t1
        self._timer.start(loop, self._deadline, self._fire)

    def _fire(self) -> None:
        self._send()
        self._interval = (
            self._interval * 2 if self._cap is None else min(self._interval * 2, self._cap)
        )
        self._deadline += self._interval
        self._timer.start(self._loop, self._deadline, self._fire)

    def slow_down(self, interval: float) -> None:
        """Proceeding non-INVITE: keep retransmitting, every `interval` (§17.1.2.2)."""
        self._interval = interval
        self._cap = interval
        self._deadline = self._loop.time() + interval
        self._timer.start(self._loop, self._deadline, self._fire)

    def cancel(self) -> None:
        self._timer.cancel()


class Transaction:
    def __init__(self, layer: TransactionLayer, request: SipRequest, key: TransactionKey) -> None:
        self.layer = layer
        self.request = request
        self.key = key
        self.state = "init"
        self._timers: list[Timer] = []
        self._retransmitter: Retransmitter | None = None

    def _after(self, seconds: float, cb: Callable[[], None]) -> None:
        timer = Timer()
        timer.start(self.layer.loop, self.layer.loop.time() + seconds, cb)
        self._timers.append(timer)

    def _stop_retransmitting(self) -> None:
        if self._retransmitter is not None:
            self._retransmitter.cancel()
            self._retransmitter = None

    def terminate(self) -> None:
        self.state = "terminated"
        self._stop_retransmitting()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self.layer._forget(self)


# --------------------------------------------------------------------- server side


class ServerTransaction(Transaction):
    def __init__(
        self, layer: TransactionLayer, request: SipRequest, key: TransactionKey, source: Address
    ) -> None:
        super().__init__(layer, request, key)
        self.source = source
        self.last_response: SipResponse | None = None

    @property
    def final_sent(self) -> bool:
        return self.last_response is not None and self.last_response.status >= 200

    def _send(self, response: SipResponse) -> None:
        self.last_response = response
        self.layer.sender.send(bytes(response), response_destination(response))

    def on_retransmission(self) -> None:
        if self.last_response is not None:
            self.layer.sender.send(
                bytes(self.last_response), response_destination(self.last_response)
            )

    def respond(self, response: SipResponse) -> None:
        raise NotImplementedError


class ServerInviteTransaction(ServerTransaction):
    """§17.2.1 with RFC 6026's Accepted state; sends 100 Trying on creation unless
    told the final answer is immediate (a refusal needs no 100)."""

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        key: TransactionKey,
        source: Address,
        *,
        trying: bool = True,
    ) -> None:
        super().__init__(layer, request, key, source)
        self.state = "proceeding"
        if trying:
            self._send(build_response(request, 100))

    def respond(self, response: SipResponse) -> None:
        if self.state != "proceeding":
            return
        self._send(response)
        t1 = self.layer.t1
        if 200 <= response.status < 300:
            # The dialog layer retransmits the 2xx; we only absorb INVITE copies (timer L).
            self.state = "accepted"
            self._after(64 * t1, self.terminate)
        elif response.status >= 300:
            self.state = "completed"
            self._retransmitter = Retransmitter(self.layer.loop, t1, T2, self.on_retransmission)
            self._after(64 * t1, self._timer_h)

    def on_retransmission(self) -> None:
        if self.state == "accepted":
            return  # the TU's 2xx retransmissions cover it (RFC 6026 §7.1)
        super().on_retransmission()

    def on_ack(self) -> None:
        if self.state == "completed":
            self.state = "confirmed"
            self._stop_retransmitting()
            self._after(T4 if self.layer.t1 >= T1 else self.layer.t1, self.terminate)

    def _timer_h(self) -> None:
        self.layer.log.info("transaction.ack_missing", sip_call_id=self.request.call_id)
        self.terminate()


class ServerNonInviteTransaction(ServerTransaction):
    """§17.2.2."""

    def __init__(
        self, layer: TransactionLayer, request: SipRequest, key: TransactionKey, source: Address
    ) -> None:
        super().__init__(layer, request, key, source)
        self.state = "trying"

    def respond(self, response: SipResponse) -> None:
        if self.state not in ("trying", "proceeding"):
            return
        self._send(response)
        if response.status < 200:
            self.state = "proceeding"
        else:
            self.state = "completed"
            self._after(64 * self.layer.t1, self.terminate)  # timer J

    def on_retransmission(self) -> None:
        if self.state != "trying":
            super().on_retransmission()


# --------------------------------------------------------------------- client side

ResponseCallback = Callable[[SipResponse], None]


class ClientTransaction(Transaction):
    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        key: TransactionKey,
        destination: Address,
        on_response: ResponseCallback | None,
    ) -> None:
        super().__init__(layer, request, key)
        self.destination = destination
        self.on_response = on_response
        self.final: asyncio.Future[SipResponse] = layer.loop.create_future()
        self.provisional_seen = False

    def _transmit(self) -> None:
        self.layer.sender.send(bytes(self.request), self.destination)

    def _timeout(self) -> None:
        if not self.final.done():
            self.final.set_exception(
                TransactionTimeout(f"no final response to {self.key[1]} from {self.destination}")
            )
        self.terminate()

    def _resolve(self, response: SipResponse) -> None:
        if not self.final.done():
            self.final.set_result(response)

    def _notify(self, response: SipResponse) -> None:
        if self.on_response is not None:
            self.on_response(response)

    def receive(self, response: SipResponse) -> None:
        raise NotImplementedError


class ClientInviteTransaction(ClientTransaction):
    """§17.1.1 with RFC 6026's Accepted state."""

    def start(self) -> None:
        self.state = "calling"
        self._transmit()
        self._retransmitter = Retransmitter(self.layer.loop, self.layer.t1, None, self._transmit)
        self._after(64 * self.layer.t1, self._timer_b)

    def _timer_b(self) -> None:
        if self.state in ("calling", "proceeding"):
            self._timeout()

    def receive(self, response: SipResponse) -> None:
        status = response.status
        if self.state in ("calling", "proceeding"):
            self._stop_retransmitting()
            if status < 200:
                self.state = "proceeding"
                self.provisional_seen = True
                self._notify(response)
            elif status < 300:
                self.state = "accepted"
                self._resolve(response)
                self._after(64 * self.layer.t1, self.terminate)  # timer M
            else:
                self.state = "completed"
                self._send_ack(response)
                self._resolve(response)
                self._after(32.0 if self.layer.t1 >= T1 else 64 * self.layer.t1, self.terminate)
        elif self.state == "accepted" and 200 <= status < 300:
            self._notify(response)  # the dialog re-sends its ACK
        elif self.state == "completed" and status >= 300:
            self._send_ack(response)

    def _send_ack(self, response: SipResponse) -> None:
        """ACK for a non-2xx final response (§17.1.1.3): same branch, hop-by-hop."""
        request = self.request
        headers = Headers([("Via", request.headers.get_all("Via")[0])])
        headers.add("Max-Forwards", "70")
        headers.add("From", request.headers.get("From") or "")
        headers.add("To", response.headers.get("To") or "")
        headers.add("Call-ID", request.call_id)
        headers.add("CSeq", f"{request.cseq[0]} ACK")
        for route in request.headers.get_all("Route"):
            headers.add("Route", route)
        ack = SipRequest(headers, b"", method="ACK", uri=request.uri)
        self.layer.sender.send(bytes(ack), self.destination)


class ClientNonInviteTransaction(ClientTransaction):
    """§17.1.2."""

    def start(self) -> None:
        self.state = "trying"
        self._transmit()
        self._retransmitter = Retransmitter(self.layer.loop, self.layer.t1, T2, self._transmit)
        self._after(64 * self.layer.t1, self._timer_f)

    def _timer_f(self) -> None:
        if self.state in ("trying", "proceeding"):
            self._timeout()

    def receive(self, response: SipResponse) -> None:
        if self.state not in ("trying", "proceeding"):
            return
        if response.status < 200:
            if self.state == "trying" and self._retransmitter is not None:
                self._retransmitter.slow_down(T2)
            self.state = "proceeding"
            self.provisional_seen = True
            self._notify(response)
            return
        self.state = "completed"
        self._stop_retransmitting()
        self._resolve(response)
        self._after(T4 if self.layer.t1 >= T1 else self.layer.t1, self.terminate)  # timer K


# --------------------------------------------------------------------- the layer


def _same_to_tag(ack: SipRequest, tx: ServerTransaction) -> bool:
    """§17.2.3: a branch-less ACK matches only if its To tag is our response's."""
    if ack.branch.startswith(BRANCH_MAGIC) or tx.last_response is None:
        return True
    return ack.to.tag == tx.last_response.to.tag


class TransactionLayer:
    """Owns every live transaction of one user agent."""

    def __init__(
        self,
        sender: DatagramSender,
        *,
        t1: float = T1,
        loop: asyncio.AbstractEventLoop | None = None,
        logger: Any = None,
    ) -> None:
        self.sender = sender
        self.t1 = t1
        self.loop = loop or asyncio.get_running_loop()
        self.log = logger or get_logger(component="sip.transaction")
        self._server: dict[TransactionKey, ServerTransaction] = {}
        self._client: dict[TransactionKey, ClientTransaction] = {}

    @staticmethod
    def _key(message: SipRequest | SipResponse) -> TransactionKey:
        method = message.cseq[1]
        return message.top_via.branch or "", method

    @property
    def server_count(self) -> int:
        """Live server transactions (what a flood or a fuzzer could leave behind)."""
        return len(self._server)

    @property
    def client_count(self) -> int:
        return len(self._client)

    def absorb(self, request: SipRequest) -> bool:
        """True when `request` belongs to a live server transaction (retransmission or
        the ACK of a non-2xx final response) and has been dealt with here."""
        if request.method == "ACK":
            tx = self._server.get(server_key(request, "INVITE"))
            if (
                isinstance(tx, ServerInviteTransaction)
                and tx.state in ("completed", "confirmed")
                and _same_to_tag(request, tx)
            ):
                tx.on_ack()
                return True
            return False  # ACK for a 2xx: the dialog's
        tx = self._server.get(server_key(request))
        if tx is None:
            return False
        tx.on_retransmission()
        return True

    def server_transaction(
        self, request: SipRequest, source: Address, *, trying: bool = True
    ) -> ServerTransaction:
        key = server_key(request)
        tx: ServerTransaction
        if request.method == "INVITE":
            tx = ServerInviteTransaction(self, request, key, source, trying=trying)
        else:
            tx = ServerNonInviteTransaction(self, request, key, source)
        self._server[key] = tx
        return tx

    def find_invite(self, cancel: SipRequest) -> ServerInviteTransaction | None:
        """The INVITE transaction a CANCEL cancels (§9.2: matched as the INVITE would be)."""
        tx = self._server.get(server_key(cancel, "INVITE"))
        return tx if isinstance(tx, ServerInviteTransaction) else None

    def receive_response(self, response: SipResponse) -> bool:
        tx = self._client.get(self._key(response))
        if tx is None:
            return False
        tx.receive(response)
        return True

    def client_transaction(
        self,
        request: SipRequest,
        destination: Address,
        on_response: ResponseCallback | None = None,
    ) -> ClientTransaction:
        key = (request.branch, request.method)
        tx: ClientTransaction
        if request.method == "INVITE":
            invite = ClientInviteTransaction(self, request, key, destination, on_response)
            self._client[key] = invite
            invite.start()
            tx = invite
        else:
            plain = ClientNonInviteTransaction(self, request, key, destination, on_response)
            self._client[key] = plain
            plain.start()
            tx = plain
        return tx

    async def request(
        self, request: SipRequest, destination: Address, on_response: ResponseCallback | None = None
    ) -> SipResponse:
        """Send a request in a new client transaction; the final response, or TransactionTimeout."""
        return await self.client_transaction(request, destination, on_response).final

    def _forget(self, tx: Transaction) -> None:
        table: dict[TransactionKey, Any] = (
            self._server if isinstance(tx, ServerTransaction) else self._client
        )
        if table.get(tx.key) is tx:
            del table[tx.key]

    def close(self) -> None:
        for tx in [*self._server.values(), *self._client.values()]:
            if isinstance(tx, ClientTransaction) and not tx.final.done():
                tx.final.set_exception(TransactionTimeout("transaction layer closed"))
            tx.terminate()
