"""Runs the in-band DTMF detector for every call on the media clock's tick.

A call's `InbandChannel.feed_g711` (the `RtpSession.on_payload` seam) only
appends the packet's G.711 payload, undecoded, to the channel's buffer
(`feed` takes 16-bit PCM for other users). Decoding the payload in every
packet's callback cost as much CPU as the detector itself at 500 calls; now
a tick decodes every call's frame with one table lookup (numpy). On each tick `InbandDtmfReceiver`
takes one 20 ms frame from every channel that has one, stacks them into one
matrix and makes one `InbandDtmfDetector.analyse` call for all of them;
keys go to each channel's `on_key`. Channels with more than one frame
waiting get further, smaller rounds in the same tick, until every frame that
arrived is analysed.

It runs again half-way between ticks, after the RTP receiver's mid-tick read
(`MID_ANALYSE`): a frame read there, such as the one that completes a tone,
is analysed at once instead of after the next tick's sends, up to 10 ms
sooner. Phones send at every phase of the tick, so each run takes about half
the calls' frames; the second detector call costs its fixed part again
(measured: 0.85 ms for 500 frames in one call, 2 x 0.54 ms in two). So the
mid-tick analysis runs only while the clock's last tick took less than
`MID_ANALYSE_MAX_LOAD` of the interval: past that the core is what limits
the calls, and the frames read mid-tick wait for the tick's own analysis
(measured with bench/rtp_path.py at 500 talking calls: one analysis a tick
costs 6.5-6.9 us a call where two cost 9.1-10).

Why every frame, at once: the detector's Q.24 timing counts 5 ms windows of
contiguous audio, so a dropped frame is a hole in the tone (a 100 ms press
becomes two, or none) and a frame analysed a tick late costs nothing. Under
load the audio does not arrive one frame per tick: a phone late by 60 ms
sends three frames at once, and a tick that starts late finds several per
call. The first version kept 4 frames and analysed at most 2 per tick, and at
500 calls one call in three lost or doubled a digit. Now a tick analyses up
to `MAX_ROUNDS_PER_TICK` frames per call (a loop stalled 320 ms is caught up
in one tick, a longer stall over the next few), and only audio more than
`MAX_BUFFERED_FRAMES` (1 s) ahead of the detector is dropped: a phone
sending faster than real time, which a real one never does. Memory stays
bounded (16 kB a call at most) and so does a tick's work.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import structlog

from voicebot.logs import get_logger
from voicebot.media.clock import ANALYSE, MID_ANALYSE, MediaClock
from voicebot.media.g711 import PCMA, PCMU, Codec
from voicebot.media.inband_dtmf import FRAME, InbandDtmfDetector

FRAME_BYTES = FRAME * 2  # 16-bit PCM
#: Audio kept per call before the oldest is dropped: 1 s.
MAX_BUFFERED_FRAMES = 50
#: Frames analysed per call in one tick at most (320 ms of audio).
MAX_ROUNDS_PER_TICK = 16
#: The mid-tick analysis runs while the clock's last tick took less than this
#: share of the interval (`MediaClock.load`); above it, the tick's own does it.
MID_ANALYSE_MAX_LOAD = 0.5

#: G.711 code -> linear sample (float32, what the detector computes in), one
#: 256-entry block per codec; a channel fed G.711 indexes it at its codec's offset.
_G711_CODECS = (PCMU, PCMA)
_G711_TO_LINEAR = np.concatenate(
    [np.frombuffer(c.decode(bytes(range(256))), dtype="<i2") for c in _G711_CODECS]
).astype(np.float32)
_G711_OFFSET = {c.payload_type: 256 * i for i, c in enumerate(_G711_CODECS)}


class InbandChannel:
    """One call's way into the receiver: `feed` audio, get keys on `on_key`.

    A channel opened with a codec takes that codec's payloads as they arrive
    (`feed_g711`, one byte a sample: the bot's calls, no per-packet decode);
    one opened without takes 16-bit PCM (`feed`).
    """

    __slots__ = (
        "_buffer",
        "_frame_bytes",
        "_ready",
        "_receiver",
        "dropped_bytes",
        "law",
        "on_key",
        "slot",
    )

    def __init__(
        self,
        receiver: InbandDtmfReceiver,
        slot: int,
        on_key: Callable[[str], None],
        law: int | None = None,
    ) -> None:
        self._receiver = receiver
        self._ready = receiver._ready
        self._buffer = bytearray()
        self.slot = slot
        self.on_key = on_key
        #: Offset of the channel's codec in the G.711 table; None: fed 16-bit PCM.
        self.law = law
        self._frame_bytes = FRAME_BYTES if law is None else FRAME
        self.dropped_bytes = 0

    @property
    def dropped_frames(self) -> int:
        """20 ms frames dropped because audio came faster than real time (a flood)."""
        return self.dropped_bytes // self._frame_bytes

    def feed(self, data: bytes) -> None:
        """16-bit little-endian PCM at 8 kHz, any length (normally one 20 ms frame)."""
        raise TypeError("this channel takes G.711 payloads: feed_g711()")

    def feed_g711(self, data: bytes) -> None:
        """A payload in the channel's codec, as it came in the RTP packet (any length)."""
        raise TypeError("this channel takes 16-bit PCM: feed()")

    def _append(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        frame_bytes = self._frame_bytes
        excess = len(buffer) - MAX_BUFFERED_FRAMES * frame_bytes
        if excess > 0:
            excess += excess % (frame_bytes // FRAME)  # whole samples
            del buffer[:excess]
            self.dropped_bytes += excess
        if len(buffer) >= frame_bytes:
            self._ready[self] = None

    def close(self) -> None:
        self._receiver.close(self)


# What a channel takes is known when it opens, so its feed is `_append` itself:
# a check and a call less on every packet (the RTP session's `on_payload`).
class _G711Channel(InbandChannel):
    __slots__ = ()
    feed_g711 = InbandChannel._append


class _PcmChannel(InbandChannel):
    __slots__ = ()
    feed = InbandChannel._append


class InbandDtmfReceiver:
    """The media clock's `Tickable` for in-band DTMF; subscribed while any channel is open."""

    def __init__(
        self,
        clock: MediaClock,
        logger: structlog.typing.FilteringBoundLogger | None = None,
    ) -> None:
        self._clock = clock
        self._log = logger or get_logger(component="inband_dtmf")
        self.detector = InbandDtmfDetector()
        self._channels: dict[int, InbandChannel] = {}
        self._ready: dict[InbandChannel, None] = {}  # channels with a whole frame waiting
        self.frames_analysed = 0
        self._mid_tick = _MidTickAnalysis(self, clock)

    @property
    def open_channels(self) -> int:
        return len(self._channels)

    def open(self, on_key: Callable[[str], None], codec: Codec | None = None) -> InbandChannel:
        """A channel fed 16-bit PCM, or `codec`'s payloads (G.711) when given."""
        law = None if codec is None else _G711_OFFSET[codec.payload_type]
        kind = _PcmChannel if law is None else _G711Channel
        channel = kind(self, self.detector.open(), on_key, law)
        self._channels[channel.slot] = channel
        self._clock.subscribe(self, ANALYSE)  # after every call's send of the tick
        self._clock.subscribe(self._mid_tick, MID_ANALYSE)  # after the mid-tick read
        return channel

    def close(self, channel: InbandChannel) -> None:
        if self._channels.get(channel.slot) is not channel:
            return
        del self._channels[channel.slot]
        self._ready.pop(channel, None)
        self.detector.close(channel.slot)
        if not self._channels:
            self._clock.unsubscribe(self)
            self._clock.unsubscribe(self._mid_tick)

    def ready(self, channel: InbandChannel) -> None:
        self._ready[channel] = None

    def on_tick(self, tick_no: int) -> None:
        for _ in range(MAX_ROUNDS_PER_TICK):
            if not self._ready:
                return
            self.analyse_ready()

    def analyse_ready(self) -> None:
        """One frame from every channel that has one, in one detector call.

        G.711 channels' frames are joined as they came (one byte a sample) and
        decoded for all of them with one table lookup; PCM channels' rows follow.
        """
        ready = self._ready
        g711: list[InbandChannel] = []
        g711_chunks: list[bytes | bytearray] = []
        pcm: list[InbandChannel] = []
        pcm_chunks: list[bytes | bytearray] = []
        for channel in list(ready):
            buffer = channel._buffer
            frame_bytes = channel._frame_bytes
            if len(buffer) == frame_bytes:  # the usual case: exactly one frame came
                chunk: bytes | bytearray = buffer
                channel._buffer = bytearray()
                del ready[channel]
            else:
                chunk = buffer[:frame_bytes]
                del buffer[:frame_bytes]
                if len(buffer) < frame_bytes:
                    del ready[channel]
            if channel.law is None:
                pcm.append(channel)
                pcm_chunks.append(chunk)
            else:
                g711.append(channel)
                g711_chunks.append(chunk)
        channels = g711 + pcm
        frames = np.empty((len(channels), FRAME), dtype=np.float32)
        if g711:
            codes = np.frombuffer(b"".join(g711_chunks), dtype=np.uint8).reshape(len(g711), FRAME)
            laws = [channel.law for channel in g711]
            if any(laws):
                index = codes + np.asarray(laws, dtype=np.intp)[:, None]
                frames[: len(g711)] = _G711_TO_LINEAR[index]
            else:  # every call in PCMU: no offset to add
                frames[: len(g711)] = _G711_TO_LINEAR[codes]
        if pcm:
            frames[len(g711) :] = np.frombuffer(b"".join(pcm_chunks), dtype="<i2").reshape(
                len(pcm), FRAME
            )
        slots = [channel.slot for channel in channels]
        self.frames_analysed += len(channels)
        for row, key in self.detector.analyse(frames, slots):
            channel = channels[row]
            try:
                channel.on_key(key)
            except Exception:
                # One call's broken handler must not take keys from the others.
                self._log.exception("inband_dtmf.key_handler_failed", key=key)


class _MidTickAnalysis:
    """The receiver's `MID_ANALYSE` subscription: its tick, while the clock has room."""

    def __init__(self, receiver: InbandDtmfReceiver, clock: MediaClock) -> None:
        self._receiver = receiver
        self._clock = clock

    def on_tick(self, tick_no: int) -> None:
        if self._clock.load < MID_ANALYSE_MAX_LOAD:
            self._receiver.on_tick(tick_no)
