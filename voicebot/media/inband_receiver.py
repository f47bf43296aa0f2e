"""Runs the in-band DTMF detector for every call on the media clock's tick.

A call's `InbandChannel.feed` (the `RtpSession.on_audio` seam) only appends
decoded PCM to the channel's buffer. On each tick `InbandDtmfReceiver`
takes one 20 ms frame from every channel that has one, stacks them into one
matrix and makes one `InbandDtmfDetector.analyse` call for all of them;
keys go to each channel's `on_key`. Channels with more than one frame
waiting get further, smaller rounds in the same tick, until every frame that
arrived is analysed.

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
from voicebot.media.clock import ANALYSE, MediaClock
from voicebot.media.inband_dtmf import FRAME, InbandDtmfDetector

FRAME_BYTES = FRAME * 2  # 16-bit PCM
#: Audio kept per call before the oldest is dropped: 1 s.
MAX_BUFFERED_FRAMES = 50
#: Frames analysed per call in one tick at most (320 ms of audio).
MAX_ROUNDS_PER_TICK = 16


class InbandChannel:
    """One call's way into the receiver: `feed` decoded audio, get keys on `on_key`."""

    __slots__ = ("_buffer", "_receiver", "dropped_bytes", "on_key", "slot")

    def __init__(
        self, receiver: InbandDtmfReceiver, slot: int, on_key: Callable[[str], None]
    ) -> None:
        self._receiver = receiver
        self._buffer = bytearray()
        self.slot = slot
        self.on_key = on_key
        self.dropped_bytes = 0

    def feed(self, pcm: bytes) -> None:
        """16-bit little-endian PCM at 8 kHz, any length (normally one 20 ms frame)."""
        buffer = self._buffer
        buffer += pcm
        excess = len(buffer) - MAX_BUFFERED_FRAMES * FRAME_BYTES
        if excess > 0:
            excess += excess & 1
            del buffer[:excess]
            self.dropped_bytes += excess
        if len(buffer) >= FRAME_BYTES:
            self._receiver.ready(self)

    def close(self) -> None:
        self._receiver.close(self)


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

    @property
    def open_channels(self) -> int:
        return len(self._channels)

    def open(self, on_key: Callable[[str], None]) -> InbandChannel:
        channel = InbandChannel(self, self.detector.open(), on_key)
        self._channels[channel.slot] = channel
        self._clock.subscribe(self, ANALYSE)  # after every call's send of the tick
        return channel

    def close(self, channel: InbandChannel) -> None:
        if self._channels.get(channel.slot) is not channel:
            return
        del self._channels[channel.slot]
        self._ready.pop(channel, None)
        self.detector.close(channel.slot)
        if not self._channels:
            self._clock.unsubscribe(self)

    def ready(self, channel: InbandChannel) -> None:
        self._ready[channel] = None

    def on_tick(self, tick_no: int) -> None:
        for _ in range(MAX_ROUNDS_PER_TICK):
            if not self._ready:
                return
            self.analyse_ready()

    def analyse_ready(self) -> None:
        """One frame from every channel that has one, in one detector call."""
        channels = list(self._ready)
        self._ready.clear()
        chunks = []
        for channel in channels:
            buffer = channel._buffer
            chunks.append(bytes(buffer[:FRAME_BYTES]))
            del buffer[:FRAME_BYTES]
            if len(buffer) >= FRAME_BYTES:
                self._ready[channel] = None
        frames = np.frombuffer(b"".join(chunks), dtype="<i2").reshape(len(channels), FRAME)
        slots = [channel.slot for channel in channels]
        self.frames_analysed += len(channels)
        for row, key in self.detector.analyse(frames, slots):
            channel = channels[row]
            try:
                channel.on_key(key)
            except Exception:
                # One call's broken handler must not take keys from the others.
                self._log.exception("inband_dtmf.key_handler_failed", key=key)
