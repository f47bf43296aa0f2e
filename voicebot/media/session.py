"""RTP sessions on the media clock: port pool, one UDP socket per call, one packet per tick.

What stock pyVoIP got wrong and this does not: no per-call threads (the
shared `MediaClock` drives sending, and reading: `voicebot.media.receiver`),
no unbounded receive buffer (a tick reads at most a few datagrams per socket
and nothing is queued in Python; the kernel drops what does not fit its
buffer), malformed datagrams are counted and dropped instead of killing the
receiver, and the sequence number wraps mod 2^16 on a normal full-size packet.

Nobody else's media: a session takes RTP only from the SDP address, and
re-latches (NAT) only to a source on a trusted IP after several in-sequence
packets (see `RtpSession`); ports are drawn at random from the range, so the
next call's port cannot be guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from time import monotonic
from typing import Any

import structlog

from voicebot.logs import get_logger
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import SAMPLES_PER_FRAME, Codec
from voicebot.media.player import FrameSource, PromptPlayer
from voicebot.media.receiver import RtpReceiver, discard_queued, receiver_for
from voicebot.media.rtp import (
    HEADER,
    RTP_HEADER_LENGTH,
    SEQ_MODULO,
    TIMESTAMP_MODULO,
    RtpPacket,
    RtpParseError,
)
from voicebot.media.telephone_event import EVENT_KEYS, DtmfDetector, DtmfSender, TelephoneEvent
from voicebot.refusal_log import RefusalLog

Address = tuple[str, int]
Logger = structlog.typing.FilteringBoundLogger

#: In-sequence packets a new source must send before we re-latch to it
#: (Asterisk's strictrtp learning, `probation` in rtp.conf, also defaults to 4).
PROBATION_PACKETS = 4
#: A re-latch is considered only once the current source has been silent this long,
#: so a sender on a trusted IP cannot take over a stream that is alive.
RELATCH_SILENCE_S = 0.5

# Port choice must not be guessable by a stranger: the OS's randomness.
_random = random.SystemRandom()


class RtpPortsExhausted(RuntimeError):
    """Every even port of the configured RTP range is taken."""


class _RtpProtocol:
    """Where an endpoint's datagrams go: the handler of the session using it, if any."""

    def __init__(self) -> None:
        self.handler: Callable[[bytes, Address], None] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.handler is not None:
            self.handler(data, (addr[0], addr[1]))


class RtpEndpoint:
    """A bound non-blocking UDP socket from an `RtpPortPool`; `close()` gives the port back.

    Not in the event loop's selector: a session reads it on the media clock's
    tick (`voicebot.media.receiver`) and writes it directly.
    """

    def __init__(self, pool: RtpPortPool, port: int, sock: socket.socket) -> None:
        self.host = pool.host
        self.port = port
        self.sock = sock
        self.protocol = _RtpProtocol()
        self._pool = pool
        self._receiver: RtpReceiver | None = None

    def listen(self, clock: MediaClock, handler: Callable[[bytes, Address], None]) -> None:
        """Hand every datagram to `handler`, read on `clock`'s ticks (the ones queued too)."""
        self.protocol.handler = handler
        if self._receiver is None and self.sock.fileno() >= 0:
            self._receiver = receiver_for(clock)
            self._receiver.add(self.sock, handler)

    def discard_queued(self) -> int:
        """Drop what waits on the socket now (stale, or sent before our SDP named
        the port); how many."""
        return discard_queued(self.sock) if self.sock.fileno() >= 0 else 0

    def close(self) -> None:
        self.protocol.handler = None
        receiver, self._receiver = self._receiver, None
        if receiver is not None:
            receiver.remove(self.sock)
        if self.sock.fileno() >= 0:
            self.sock.close()
            self._pool.release(self.port)


class RtpPortPool:
    """Even ports in [min_port, max_port] (RFC 3550 §11: RTP even, RTCP the odd one above).

    A port is drawn at random among the free ones: handed out in order, the
    next call's port was predictable and an attacker could spray it with RTP
    before the phone's first packet. Recently released ports (a quarter of
    the range) are drawn only when nothing else is free, so late packets of an
    old call rarely land in a new one. Ports some other process holds are
    skipped.
    """

    def __init__(self, host: str, min_port: int, max_port: int) -> None:
        first = min_port + (min_port % 2)
        if first > max_port:
            raise ValueError(f"RTP port range {min_port}-{max_port} has no even port")
        self.host = host
        self.min_port, self.max_port = min_port, max_port
        self._ports = range(first, max_port + 1, 2)
        self._in_use: set[int] = set()
        self._resting: deque[int] = deque(maxlen=len(self._ports) // 4)

    @property
    def in_use(self) -> frozenset[int]:
        return frozenset(self._in_use)

    @property
    def size(self) -> int:
        """How many calls the range can carry (one even port each)."""
        return len(self._ports)

    def _candidates(self) -> Iterator[int]:
        resting = set(self._resting)
        fresh = [p for p in self._ports if p not in self._in_use and p not in resting]
        # Drawn one at a time (a lazy Fisher-Yates): the first free port costs one
        # draw from the OS. Shuffling the whole range up front cost 3.5 ms of CPU
        # per call for 2000 ports, a third of a core at 100 new calls a second.
        for i in range(len(fresh)):
            j = _random.randrange(i, len(fresh))
            fresh[i], fresh[j] = fresh[j], fresh[i]
            yield fresh[i]
        yield from [p for p in self._resting if p not in self._in_use]  # oldest first

    async def allocate(self) -> RtpEndpoint:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for port in self._candidates():
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                sock.bind((self.host, port))
            except OSError:
                sock.close()
                continue
            self._in_use.add(port)
            with contextlib.suppress(ValueError):
                self._resting.remove(port)
            return RtpEndpoint(self, port, sock)
        raise RtpPortsExhausted(
            f"no free even RTP port in {self.min_port}-{self.max_port} on {self.host}"
        )

    def release(self, port: int) -> None:
        if port in self._in_use:
            self._in_use.discard(port)
            if self._resting.maxlen:
                self._resting.append(port)


@dataclass(slots=True)
class RtpStats:
    packets_sent: int = 0
    packets_received: int = 0
    malformed: int = 0
    keys: int = 0
    refused: int = 0  # valid RTP from a source we do not take media from
    learning: int = 0  # packets of a trusted new source before it earned the latch
    relatched: int = 0  # times the send target moved to a learned source (NAT)
    send_errors: int = 0  # sends the OS refused


@dataclass(slots=True)
class _Candidate:
    """A source on a trusted IP that is sending in sequence: latched after PROBATION_PACKETS."""

    address: Address
    next_seq: int
    count: int


@dataclass(slots=True)
class _KeyPress:
    key: str
    duration: float
    gap_ticks: int
    done: asyncio.Future[None] | None


class RtpSession:
    """One call's media: sends a frame per clock tick, reports keys and audio as they arrive.

    Whose packets count (Asterisk's strictrtp with learning): media is taken
    from the SDP address (`remote`). Behind NAT the phone's packets come from
    another address, so a source whose IP is trusted (the SDP `c=` IP, or one
    in `learn_from`: the SIP peer's signalling IP) becomes the new `remote`
    after PROBATION_PACKETS consecutive in-sequence packets, and only while
    the current source is silent. Everything else is refused, counted in
    `stats.refused` and logged as one rate-limited `rtp.source_refused` line.
    The first version latched to whichever address sent the first valid
    packet: RTP sprayed from 127.0.0.2 before the phone's first packet took
    the call over, and the manager's keys were lost.
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
        learn_from: Iterable[str] = (),
        logger: Logger | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._sock = endpoint.sock
        self.remote = remote
        self._trusted_ips = frozenset({remote[0], *learn_from})
        self._candidate: _Candidate | None = None
        self._heard_at: float | None = None  # time.monotonic() of the last packet from `remote`
        self.codec = codec
        self._audio_pt = codec.payload_type
        self.dtmf_payload_type = dtmf_payload_type
        self.on_key = on_key
        self.on_audio = on_audio  # decoded 16-bit PCM of every accepted audio packet
        #: (sequence, payload) of every accepted audio packet as it arrives, undecoded
        #: (the media bridge's input).
        self.on_packet: Callable[[int, bytes], None] | None = None
        #: Every accepted audio payload in the call's codec, undecoded (in-band DTMF's
        #: input: its receiver decodes every call's frame of a tick at once).
        self.on_payload: Callable[[bytes], None] | None = None
        self.player = PromptPlayer(codec.silence())
        #: When set, frames come from here instead of `player` (the media bridge's output).
        self.source: FrameSource | None = None
        self.stats = RtpStats()
        self._clock = clock
        self._log = logger or get_logger()
        self._refusals = RefusalLog(self._log)
        self._detector = DtmfDetector()
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._timestamp = random.getrandbits(32)
        self._last_tick: int | None = None
        self._presses: deque[_KeyPress] = deque()
        self._outgoing: deque[RtpPacket | None] = deque()  # DTMF packets; None = audio tick
        self._closed = False

    @property
    def local_port(self) -> int:
        return self.endpoint.port

    async def start(self, *, keep_queued: bool = False) -> None:
        """Send on every tick and read what arrives. What queued before is dropped
        (an outbound call's early media, stale once it is answered) unless
        `keep_queued` (an answered call's first audio: see `voicebot.call`)."""
        if not keep_queued:
            self.endpoint.discard_queued()
        self.endpoint.listen(self._clock, self._on_datagram)
        self._clock.subscribe(self)
        self._log.info(
            "rtp.started",
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
        self.endpoint.close()
        for press in self._presses:
            if press.done is not None and not press.done.done():
                press.done.cancel()
        self._log.info("rtp.closed", **dataclasses.asdict(self.stats))

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
        # Every call, every 20 ms: the plain packet is built here, not through
        # `plain_packet` (a call less per packet; same bytes).
        last, self._last_tick = self._last_tick, tick_no
        if last is not None:
            # Skipped ticks (a stalled loop) advance the timestamp too, so the
            # far end sees a gap rather than a stream that has fallen behind.
            ticks = tick_no - last
            self._timestamp = (
                self._timestamp + SAMPLES_PER_FRAME * (ticks if ticks > 1 else 1)
            ) % TIMESTAMP_MODULO
        packet = self._next_dtmf_packet() if self._outgoing or self._presses else None
        if packet is None:
            payload, marker = (self.source or self.player).next_frame()
            second = self._audio_pt | 0x80 if marker else self._audio_pt
            data = HEADER.pack(0x80, second, self._seq, self._timestamp, self._ssrc) + payload
        else:  # an RFC 4733 event keeps the press's own timestamp
            packet.sequence = self._seq
            packet.ssrc = self._ssrc
            data = bytes(packet)
        self._seq = (self._seq + 1) % SEQ_MODULO
        try:
            # The socket itself: the transport's checks and buffering cost a third of
            # the send, and a datagram that cannot go now is better lost than late.
            self._sock.sendto(data, self.remote)
        except (OSError, OverflowError, ValueError, TypeError) as exc:
            # Never let one call's bad target take it off the media clock.
            self.stats.send_errors += 1
            self._refusals.refused("rtp.send_failed", remote=self.remote, error=str(exc)[:100])
            return
        self.stats.packets_sent += 1

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
        # The common case first, with no call on the way (it was `plain_audio_payload`
        # and `_accept_source`): a plain packet (version 2; no padding, extension or
        # CSRC) of the call's codec from the call's source, 50 a second per call.
        if len(data) > RTP_HEADER_LENGTH and data[0] == 0x80 and data[1] & 0x7F == self._audio_pt:
            if addr == self.remote:
                self._candidate = None
                self._heard_at = monotonic()
                self.stats.packets_received += 1
            elif not self._accept_source(addr, (data[2] << 8) | data[3]):
                return
            payload = data[RTP_HEADER_LENGTH:]
            try:
                if self.on_payload is not None:
                    self.on_payload(payload)
                if self.on_packet is not None:
                    self.on_packet((data[2] << 8) | data[3], payload)
                if self.on_audio is not None:
                    self.on_audio(self.codec.decode(payload))
            except Exception:
                self._log.exception("rtp.callback_failed")
            return
        try:
            packet = RtpPacket.parse(data)
            if packet.payload_type == self.dtmf_payload_type:
                TelephoneEvent.parse(packet.payload)  # fully valid before it may latch
                if not self._accept_source(addr, packet.sequence):
                    return
                key = self._detector.feed(packet)
                if key is not None:
                    self.stats.keys += 1
                    self._log.info("rtp.key_received", key=key, source="rfc4733")
                    if self.on_key is not None:
                        self.on_key(key)
            elif packet.payload_type == self.codec.payload_type:
                if not self._accept_source(addr, packet.sequence):
                    return
                if self.on_payload is not None:
                    self.on_payload(packet.payload)
                if self.on_packet is not None:
                    self.on_packet(packet.sequence, packet.payload)
                if self.on_audio is not None:
                    self.on_audio(self.codec.decode(packet.payload))
        except RtpParseError:
            self.stats.malformed += 1
        except Exception:
            self._log.exception("rtp.callback_failed")

    def _accept_source(self, addr: Address, seq: int) -> bool:
        now = monotonic()
        if addr == self.remote:
            self._candidate = None
            self._heard_at = now
            self.stats.packets_received += 1
            return True
        alive = self._heard_at is not None and now - self._heard_at < RELATCH_SILENCE_S
        if addr[0] not in self._trusted_ips or alive:
            self.stats.refused += 1
            self._refusals.refused(
                "rtp.source_refused",
                source=f"{addr[0]}:{addr[1]}",
                remote=f"{self.remote[0]}:{self.remote[1]}",
                reason="live_stream" if addr[0] in self._trusted_ips else "untrusted_ip",
                refused=self.stats.refused,
            )
            return False
        candidate = self._candidate
        if candidate is None or candidate.address != addr or seq != candidate.next_seq:
            candidate = self._candidate = _Candidate(addr, seq, 0)  # (re)start probation
        candidate.count += 1
        candidate.next_seq = (seq + 1) % SEQ_MODULO
        if candidate.count < PROBATION_PACKETS:
            self.stats.learning += 1
            return False
        self._log.info(
            "rtp.source_latched", sdp_remote=self.remote, observed=addr, after=candidate.count
        )
        self.remote = addr
        self._candidate = None
        self._heard_at = now
        self.stats.relatched += 1
        self.stats.packets_received += 1
        return True
