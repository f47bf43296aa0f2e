"""RTP sessions on asyncio: port pool, one datagram endpoint per call, one packet per tick.

What stock pyVoIP got wrong and this does not: no per-call threads (the
shared `MediaClock` drives sending), no unbounded receive buffer (packets are
handled as they arrive and nothing is queued), malformed datagrams are counted
and dropped instead of killing the receiver, and the sequence number wraps
mod 2^16 on a normal full-size packet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from voicebot.logs import get_logger
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import SAMPLES_PER_FRAME, Codec
from voicebot.media.player import PromptPlayer
from voicebot.media.rtp import SEQ_MODULO, TIMESTAMP_MODULO, RtpPacket, RtpParseError
from voicebot.media.telephone_event import EVENT_KEYS, DtmfDetector, DtmfSender, TelephoneEvent

Address = tuple[str, int]
Logger = structlog.typing.FilteringBoundLogger


class RtpPortsExhausted(RuntimeError):
    """Every even port of the configured RTP range is taken."""


class _RtpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.handler: Callable[[bytes, Address], None] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.handler is not None:
            self.handler(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable before the far end opens its port: not our problem.
        pass


class RtpEndpoint:
    """A bound UDP port from an `RtpPortPool`; `close()` gives it back."""

    def __init__(
        self,
        pool: RtpPortPool,
        port: int,
        transport: asyncio.DatagramTransport,
        protocol: _RtpProtocol,
    ) -> None:
        self.host = pool.host
        self.port = port
        self.transport = transport
        self.protocol = protocol
        self._pool = pool

    def close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()
            self._pool.release(self.port)


class RtpPortPool:
    """Even ports in [min_port, max_port] (RFC 3550 §11: RTP even, RTCP the odd one above).

    Allocation walks on from the last port handed out, so a just-released
    port is the last to be reused and late packets of an old call do not
    land in a new one. Ports some other process holds are skipped.
    """

    def __init__(self, host: str, min_port: int, max_port: int) -> None:
        first = min_port + (min_port % 2)
        if first > max_port:
            raise ValueError(f"RTP port range {min_port}-{max_port} has no even port")
        self.host = host
        self.min_port, self.max_port = min_port, max_port
        self._ports = range(first, max_port + 1, 2)
        self._in_use: set[int] = set()
        self._cursor = 0

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    async def allocate(self) -> RtpEndpoint:
        loop = asyncio.get_running_loop()
        for _ in range(len(self._ports)):
            port = self._ports[self._cursor]
            self._cursor = (self._cursor + 1) % len(self._ports)
            if port in self._in_use:
                continue
            try:
                transport, protocol = await loop.create_datagram_endpoint(
                    _RtpProtocol, local_addr=(self.host, port)
                )
            except OSError:
                continue
            self._in_use.add(port)
            return RtpEndpoint(self, port, transport, protocol)
        raise RtpPortsExhausted(
            f"no free even RTP port in {self.min_port}-{self.max_port} on {self.host}"
        )

    def release(self, port: int) -> None:
        self._in_use.discard(port)


@dataclass(slots=True)
class RtpStats:
    packets_sent: int = 0
    packets_received: int = 0
    malformed: int = 0
    keys: int = 0
    foreign: int = 0  # valid RTP from another address after we latched


@dataclass(slots=True)
class _KeyPress:
    key: str
    duration: float
    gap_ticks: int
    done: asyncio.Future[None] | None


class RtpSession:
    """One call's media: sends a frame per clock tick, reports keys and audio as they arrive.

    Symmetric RTP (RFC 4961; Asterisk's comedia/strictrtp): the first valid
    RTP packet latches the send target to its source address, which may
    differ from the SDP one behind NAT; after that, packets from any other
    address are counted in `stats.foreign` and dropped, so a stranger
    cannot hijack the stream.
    """

    def __init__(
        self,
        endpoint: RtpEndpoint,
        remote: Address,
        codec: Codec,
        clock: MediaClock,
        *,
        dtmf_payload_type: int | None = None,
        on_key: Callable[[str], None] | None = None,
        on_audio: Callable[[bytes], None] | None = None,
        logger: Logger | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.remote = remote
        self.codec = codec
        self.dtmf_payload_type = dtmf_payload_type
        self.on_key = on_key
        self.on_audio = on_audio  # seam for in-band DTMF (see telephone_event.KeySource)
        self.player = PromptPlayer(codec.silence())
        self.stats = RtpStats()
        self._clock = clock
        self._log = logger or get_logger()
        self._detector = DtmfDetector()
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._last_tick: int | None = None
        self._latched = False
        self._presses: deque[_KeyPress] = deque()
        self._outgoing: deque[RtpPacket | None] = deque()  # DTMF packets; None = audio tick
        self._closed = False

    @property
    def local_port(self) -> int:
        return self.endpoint.port

    async def start(self) -> None:
        self.endpoint.protocol.handler = self._on_datagram
        self._clock.subscribe(self)
        self._log.info(
            "rtp_started",
            local_port=self.local_port,
            remote=self.remote,
            codec=self.codec.name,
            dtmf_pt=self.dtmf_payload_type,
        )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._clock.unsubscribe(self)
        self.player.stop()
        self.endpoint.protocol.handler = None
        self.endpoint.close()
        for press in self._presses:
            if press.done is not None and not press.done.done():
                press.done.cancel()
        self._log.info("rtp_closed", **dataclasses.asdict(self.stats))

    def send_keys(
        self, keys: str, duration: float = 0.100, gap: float = 0.100
    ) -> asyncio.Future[None]:
        """Queue RFC 4733 key presses (the simulator's side); the future resolves when sent."""
        if self.dtmf_payload_type is None:
            raise RuntimeError("far end did not offer telephone-event")
        if bad := [k for k in keys if k.upper() not in EVENT_KEYS]:
            raise ValueError(f"not DTMF keys: {bad}")  # here, not later inside on_tick
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        gap_ticks = max(1, round(gap / self._clock.interval))
        for i, key in enumerate(keys):
            self._presses.append(
                _KeyPress(key, duration, gap_ticks, done if i == len(keys) - 1 else None)
            )
        if not keys:
            done.set_result(None)
        return done

    # -- sending -------------------------------------------------------------

    def on_tick(self, tick_no: int) -> None:
        if self._last_tick is not None:
            # Skipped ticks (a stalled loop) advance the timestamp too, so the
            # far end sees a gap rather than a stream that has fallen behind.
            self._timestamp += SAMPLES_PER_FRAME * max(1, tick_no - self._last_tick)
            self._timestamp %= TIMESTAMP_MODULO
        self._last_tick = tick_no
        packet = self._next_dtmf_packet()
        if packet is None:
            payload, marker = self.player.next_frame()
            packet = RtpPacket(self.codec.payload_type, marker=marker, payload=payload)
        packet.sequence = self._seq
        packet.ssrc = self._ssrc
        if packet.payload_type != self.dtmf_payload_type:
            packet.timestamp = self._timestamp
        self.endpoint.transport.sendto(bytes(packet), self.remote)
        self.stats.packets_sent += 1
        self._seq = (self._seq + 1) % SEQ_MODULO

    def _next_dtmf_packet(self) -> RtpPacket | None:
        if not self._outgoing and self._presses:
            press = self._presses[0]
            assert self.dtmf_payload_type is not None
            sender = DtmfSender(self.dtmf_payload_type, self._ssrc, ptime=self._clock.interval)
            packets = sender.packets(press.key, self._seq, self._timestamp, press.duration)
            self._outgoing.extend(p for p, _ in packets)
            self._outgoing.extend([None] * press.gap_ticks)
        if not self._outgoing:
            return None
        packet = self._outgoing.popleft()
        if not self._outgoing:
            press = self._presses.popleft()
            if press.done is not None and not press.done.done():
                press.done.set_result(None)
        return packet

    # -- receiving -----------------------------------------------------------

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        try:
            packet = RtpPacket.parse(data)
            if packet.payload_type == self.dtmf_payload_type:
                TelephoneEvent.parse(packet.payload)  # fully valid before it may latch
                if not self._accept_source(addr):
                    return
                key = self._detector.feed(packet)
                if key is not None:
                    self.stats.keys += 1
                    self._log.info("dtmf_key", key=key, source="rfc4733")
                    if self.on_key is not None:
                        self.on_key(key)
            elif packet.payload_type == self.codec.payload_type:
                if not self._accept_source(addr):
                    return
                if self.on_audio is not None:
                    self.on_audio(self.codec.decode(packet.payload))
        except RtpParseError:
            self.stats.malformed += 1
        except Exception:
            self._log.exception("rtp_receive_callback_failed")

    def _accept_source(self, addr: Address) -> bool:
        if not self._latched:
            self._latched = True
            if addr != self.remote:
                self._log.info("rtp_symmetric_latch", sdp_remote=self.remote, observed=addr)
                self.remote = addr
        elif addr != self.remote:
            self.stats.foreign += 1
            return False
        self.stats.packets_received += 1
        return True
