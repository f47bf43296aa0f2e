"""Relay audio between two `RtpSession`s on the one media clock (a B2BUA's media half).

Each direction is a `BridgeDirection`: the receiving session hands it every
accepted audio packet (`RtpSession.on_packet`, so strict RTP still decides
whose packets count), a small jitter buffer puts them back in sequence order,
and the sending session pulls one 20 ms frame per clock tick from it
(`RtpSession.source`). No thread and no task of its own: the clock that
already drives both sessions drives the bridge.

Codecs: the same codec on both legs passes payload bytes through untouched;
PCMU on one leg and PCMA on the other is converted with a 256-entry table
(`bytes.translate`, in C) built once from the G.711 decoder and the other
law's encoder, i.e. exactly μ-law → linear → A-law per sample.

Jitter: a direction starts playing once `depth` packets (40 ms) are queued,
so a packet that arrives up to that much late still makes its slot. A
packet missing when its slot comes, while later ones are already queued,
is lost: its slot gets a frame of silence (the codec's silence byte; no
comfort-noise payload is negotiated) and playout moves on. An empty buffer
(the sender paused, or fell behind our clock) gives silence and re-primes.
A buffer that grows past `max_depth` (the sender's clock runs fast) drops
its oldest packets back to `depth`, so delay stays bounded. A packet older
than the playout point is dropped (counted in `late`); a sequence jump of
more than `RESYNC_GAP` (a new stream, a restarted phone) restarts the buffer.

Key presses (RFC 4733) never reach a direction: the session parses
telephone-event packets itself and reports keys through `on_key`, so they
cannot be relayed as audio garbage. `MediaBridge` re-sends each key as a
fresh RFC 4733 press on the other leg when that leg negotiated
telephone-event (the manager can key into a client's menu), and drops it
otherwise. Packet times are the sender's own, not the original's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from voicebot.media.g711 import SAMPLES_PER_FRAME, Codec
from voicebot.media.rtp import SEQ_MODULO
from voicebot.media.session import RtpSession

#: Packets queued before playout starts (40 ms at 20 ms per packet).
JITTER_DEPTH = 2
#: More than this many queued packets and the oldest are dropped back to JITTER_DEPTH.
JITTER_MAX_DEPTH = 10
#: A sequence number this far from the playout point starts the buffer afresh.
RESYNC_GAP = 100


@cache
def transcode_table(source: Codec, target: Codec) -> bytes:
    """`bytes.translate` table: a `source` G.711 byte to the `target` byte of the same sample."""
    return target.encode(source.decode(bytes(range(256))))


def transcoder(source: Codec, target: Codec) -> Callable[[bytes], bytes]:
    """Payload in `source` to payload in `target`: identity when they are the same codec."""
    if source.payload_type == target.payload_type:
        return bytes
    table = transcode_table(source, target)
    return lambda payload: payload.translate(table)


@dataclass(slots=True)
class DirectionStats:
    received: int = 0  # packets handed to the buffer
    played: int = 0  # packets sent on to the other leg
    lost: int = 0  # slots filled with silence because their packet never came
    late: int = 0  # packets that arrived after their slot had passed (dropped)
    duplicates: int = 0
    overflow: int = 0  # packets dropped because the buffer ran past max_depth
    resyncs: int = 0
    underruns: int = 0  # ticks with nothing to play after playout had started


class BridgeDirection:
    """One direction of a bridge: packets in (any order), one frame per tick out."""

    def __init__(
        self,
        source: Codec,
        target: Codec,
        *,
        depth: int = JITTER_DEPTH,
        max_depth: int = JITTER_MAX_DEPTH,
        frame_samples: int = SAMPLES_PER_FRAME,
    ) -> None:
        if not 1 <= depth <= max_depth:
            raise ValueError(f"jitter depth must be 1..max_depth, got {depth}/{max_depth}")
        self.depth = depth
        self.max_depth = max_depth
        self.stats = DirectionStats()
        self._convert = transcoder(source, target)
        self._frame = frame_samples
        self._silence = target.silence(frame_samples)
        self._packets: dict[int, bytes] = {}  # sequence -> payload (source codec)
        self._next: int | None = None  # sequence number of the next slot to play
        self._playing = False
        self._pending = b""  # converted samples not yet sent (packets not 20 ms long)
        self._talking = False

    def push(self, seq: int, payload: bytes) -> None:
        """A packet from the receiving leg (already accepted by its strict-RTP rules)."""
        self.stats.received += 1
        if self._next is None:
            self._next = seq
        else:
            ahead = (seq - self._next) % SEQ_MODULO
            if ahead >= SEQ_MODULO // 2:  # behind the playout point
                if SEQ_MODULO - ahead > RESYNC_GAP:
                    self._resync(seq)
                else:
                    self.stats.late += 1
                    return
            elif ahead > RESYNC_GAP:
                self._resync(seq)
        if seq in self._packets:
            self.stats.duplicates += 1
            return
        self._packets[seq] = payload
        if len(self._packets) > self.max_depth:
            self._trim()

    def _resync(self, seq: int) -> None:
        self.stats.resyncs += 1
        self._packets.clear()
        self._next = seq
        self._playing = False

    def _trim(self) -> None:
        assert self._next is not None
        while len(self._packets) > self.depth:
            if self._packets.pop(self._next, None) is not None:
                self.stats.overflow += 1
            self._next = (self._next + 1) % SEQ_MODULO

    def _pop(self) -> bytes | None:
        """The next slot's payload in the target codec; None when there is nothing to play."""
        if not self._playing:
            if len(self._packets) < self.depth:
                return None
            self._playing = True
        if not self._packets:
            self._playing = False
            self.stats.underruns += 1
            return None
        assert self._next is not None
        payload = self._packets.pop(self._next, None)
        self._next = (self._next + 1) % SEQ_MODULO
        if payload is None:
            self.stats.lost += 1
            return self._silence
        self.stats.played += 1
        return self._convert(payload)

    def next_frame(self) -> tuple[bytes, bool]:
        """One frame for the sending session's tick (`FrameSource`)."""
        pending = self._pending
        while len(pending) < self._frame:
            payload = self._pop()
            if payload is None:
                break
            pending += payload
        if len(pending) < self._frame:
            # Nothing (enough) to play: a frame of silence, carrying what we had.
            frame = pending + self._silence[len(pending) :]
            self._pending = b""
            self._talking = False
            return frame, False
        frame, self._pending = pending[: self._frame], pending[self._frame :]
        start = not self._talking
        self._talking = True
        return frame, start


class MediaBridge:
    """Audio between two running sessions, both ways, until `stop()`.

    While bridged the sessions' own players are silent (their `source` is
    the other direction); `stop()` gives the players back.
    """

    def __init__(
        self, a: RtpSession, b: RtpSession, *, depth: int = JITTER_DEPTH, forward_keys: bool = True
    ) -> None:
        self.a, self.b = a, b
        self.a_to_b = BridgeDirection(a.codec, b.codec, depth=depth)
        self.b_to_a = BridgeDirection(b.codec, a.codec, depth=depth)
        self._forward_keys = forward_keys
        self._saved_keys: tuple[Callable[[str], None] | None, Callable[[str], None] | None] = (
            None,
            None,
        )
        self.running = False

    def start(self) -> None:
        a, b = self.a, self.b
        a.player.stop()
        b.player.stop()
        a.on_packet = self.a_to_b.push
        b.on_packet = self.b_to_a.push
        b.source = self.a_to_b
        a.source = self.b_to_a
        if self._forward_keys:
            self._saved_keys = (a.on_key, b.on_key)
            a.on_key = self._key_to(b)
            b.on_key = self._key_to(a)
        self.running = True

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        a, b = self.a, self.b
        a.on_packet = b.on_packet = None
        a.source = b.source = None
        if self._forward_keys:
            a.on_key, b.on_key = self._saved_keys

    @staticmethod
    def _key_to(session: RtpSession) -> Callable[[str], None]:
        def forward(key: str) -> None:
            if session.dtmf_payload_type is not None:
                session.send_keys(key)

        return forward
