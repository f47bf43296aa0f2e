"""SIP over UDP on asyncio (RFC 3261 §18, RFC 3581).

Responses go where the request came from, not to a configured server:
§18.2.2 sends to the top Via's `received` address (which we stamp on every
request from its source IP) and, with RFC 3581 `rport`, to the source port.
Stock pyVoIP sent every response to its configured server. The §18.2.2
`maddr` branch is deliberately not implemented: it let any sender aim our
responses at a third party (ten INVITEs made us send 120 packets to
127.0.0.3), so a response's IP is always the packet's source IP.

Every datagram is first shown to `screen(data, source)` (the user agent's
allow-list and rate limits), before it is parsed or answered at all.

A malformed datagram never reaches the layers above: when its request line
can still be read we answer 400 to the packet's source address (so the sender
stops retransmitting), otherwise it is dropped. Keepalive CRLFs (RFC 5626
§4.4.1) are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from voicebot.logs import get_logger
from voicebot.refusal_log import RefusalLog
from voicebot.sip.message import (
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    Via,
    parse_message,
    split_list,
)
from voicebot.sip.pyvoip_adapter import reason_phrase

Address = tuple[str, int]
RequestHandler = Callable[[SipRequest, Address], None]
ResponseHandler = Callable[[SipResponse, Address], None]
Screen = Callable[[bytes, Address], bool]

MAX_DATAGRAM = 65535
#: SO_RCVBUF asked for the SIP socket (the kernel caps it at net.core.rmem_max).
RECEIVE_BUFFER_BYTES = 4 << 20
#: Datagrams read and handled each time the loop finds the socket readable.
#: asyncio's own datagram transport reads one a pass; while the media clock
#: keeps the loop busy that is a few passes a tick, and at 500 in-band calls
#: a ramp of 100 INVITEs a second (with their ACKs) queued for up to 10 s: the
#: calls' media started that late. 16 handled SIP messages are a few ms.
MAX_DATAGRAMS_PER_WAKEUP = 16


def stamp_via(request: SipRequest, source: Address) -> None:
    """Add received= / rport= to the top Via of a request from `source` (§18.2.1, RFC 3581)."""
    vias = request.headers.get_all("Via")
    top = Via.parse(vias[0])
    host, port = source
    if "rport" in top.params:
        top.params["rport"] = str(port)
        top.params["received"] = host
    elif top.host != host:
        top.params["received"] = host
    else:
        return
    fields: list[tuple[str, str]] = []
    done = False
    for name, value in request.headers:
        if name == "Via" and not done:
            value = ", ".join([str(top), *split_list(value)[1:]])
            done = True
        fields.append((name, value))
    request.headers = Headers(fields)


def response_destination(response: SipResponse) -> Address:
    """Where a response goes (RFC 3261 §18.2.2 for unreliable transports, RFC 3581 §4)."""
    via = response.top_via
    host = via.received or via.host  # never maddr: see the module docstring
    port = via.rport or via.port or 5060
    return host, port


class SipTransport:
    """One UDP socket carrying every SIP message of the user agent.

    The socket is read by this class, not by an asyncio transport: up to
    `MAX_DATAGRAMS_PER_WAKEUP` datagrams each time the loop finds it readable
    (asyncio's reads one). Sends go straight to the socket; one that cannot
    go at once (the send buffer full) is dropped and logged, and SIP's own
    retransmissions carry it.
    """

    def __init__(
        self,
        on_request: RequestHandler,
        on_response: ResponseHandler,
        *,
        screen: Screen | None = None,
        logger: Any = None,
    ) -> None:
        self._on_request = on_request
        self._on_response = on_response
        self._screen = screen
        self._log = logger or get_logger(component="sip.transport")
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.local_address: Address = ("0.0.0.0", 0)
        self.malformed = 0  # datagrams the parser refused
        self.send_dropped = 0  # datagrams the socket could not take at once
        self._drops = RefusalLog(self._log)  # a full send buffer: a line a second

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        on_request: RequestHandler,
        on_response: ResponseHandler,
        *,
        screen: Screen | None = None,
        logger: Any = None,
    ) -> SipTransport:
        """Bind host:port (port 0 picks a free one; see `local_address`)."""
        loop = asyncio.get_running_loop()
        transport = cls(on_request, on_response, screen=screen, logger=logger)
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, proto, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        try:
            sock.setblocking(False)
            # A burst of INVITEs and ACKs while the media keeps the loop busy
            # waits in the kernel; the default queue (~208 KB) overflowed at 500
            # calls and dropped 2083 requests in one bench run (bench/full_duplex.py).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        transport._start(loop, sock)
        return transport

    def _start(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop, self._sock = loop, sock
        sockname = sock.getsockname()
        self.local_address = (sockname[0], sockname[1])
        loop.add_reader(sock.fileno(), self._read_ready)

    def _read_ready(self) -> None:
        sock = self._sock
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            if sock is None or sock.fileno() < 0:
                return  # closed by what a message did
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            self.datagram_received(data, addr)
            sock = self._sock

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source: Address = (addr[0], addr[1])
        if not data.strip(b"\r\n \t"):
            return  # keepalive
        try:
            if self._screen is not None and not self._screen(data, source):
                return
            try:
                message = parse_message(data)
            except SipParseError as exc:
                self._reject_malformed(data, source, str(exc))
                return
            if isinstance(message, SipRequest):
                stamp_via(message, source)
                self._on_request(message, source)
            else:
                self._on_response(message, source)
        except Exception as exc:  # one bad message must never take the UA down
            # The layers above answer every request themselves; reaching here is a
            # bug, logged as one line (a flood of them must not flood the log
            # with tracebacks).
            self._log.error(
                "sip.datagram_failed",
                source=f"{source[0]}:{source[1]}",
                error=f"{type(exc).__name__}: {exc}"[:200],
            )

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the transaction timers deal with it.
        self._log.debug("sip.transport_error", error=str(exc))

    def _reject_malformed(self, data: bytes, source: Address, error: str) -> None:
        log = self._log.bind(source=f"{source[0]}:{source[1]}", error=error[:200])
        self.malformed += 1
        response = malformed_response(data, source)
        if response is None:
            log.info("sip.malformed_dropped")
            return
        log.info("sip.malformed_refused", status=400)
        self.send(bytes(response), source)

    def send(self, data: bytes, destination: Address) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            sock.sendto(data, destination)
        except (BlockingIOError, InterruptedError):
            # UDP: SIP retransmits what matters (requests, INVITE responses).
            self.send_dropped += 1
            self._drops.refused(
                "sip.send_dropped",
                destination=f"{destination[0]}:{destination[1]}",
                dropped=self.send_dropped,
            )
        except OSError as exc:
            self.error_received(exc)

    def send_request(self, request: SipRequest, destination: Address) -> None:
        self.send(bytes(request), destination)

    def send_response(self, response: SipResponse) -> None:
        self.send(bytes(response), response_destination(response))

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(ValueError, OSError):
                self._loop.remove_reader(sock.fileno())
        sock.close()


def malformed_response(data: bytes, source: Address) -> SipResponse | None:
    """A 400 for a request we cannot parse fully, or None when even that is impossible.

    Needs a request line; the top Via, From/To/Call-ID/CSeq are copied raw
    when present (RFC 3261 §8.2.6 asks for them). It goes to the packet's
    source address, so a Via we cannot read (a port of 5 000 digits) still
    gets its 400.
    """
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    lines = [line for line in text.split("\n\n", 1)[0].split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        return None
    parts = lines[0].split()
    if len(parts) != 3 or parts[2].upper() != "SIP/2.0" or parts[0].startswith("SIP/"):
        return None
    if parts[0].upper() == "ACK":
        return None  # an ACK is never answered (RFC 3261 §17.2.3)
    copied = Headers()
    via: str | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = name.strip().lower()
        if key in ("via", "v") and via is None:
            raw = value.split(",")[0].strip()
            try:
                parsed = Via.parse(raw)
            except SipParseError:
                via = raw
            else:
                if "rport" in parsed.params:
                    parsed.params["rport"] = str(source[1])
                parsed.params["received"] = source[0]
                via = str(parsed)
        elif key in ("from", "f", "to", "t", "call-id", "i", "cseq"):
            copied.add(name.strip(), value.strip())
    if via is None:
        return None
    headers = Headers([("Via", via)])
    for name, value in copied:
        headers.add(name, value)
    return SipResponse(headers, b"", status=400, reason=reason_phrase(400) or "Bad Request")
