"""Generated call-progress tones (no recording needed).

The hold tone is what a manager hears while the bot waits on its database to
store an entry: short 425 Hz beeps (the ITU-T E.180 common tone frequency),
0.2 s on and 0.8 s off, so the line is clearly alive but nobody mistakes it
for a prompt.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from functools import cache

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms
HOLD_FREQUENCY_HZ = 425.0
HOLD_ON_S = 0.2
HOLD_OFF_S = 0.8
HOLD_AMPLITUDE = 0.25  # of full scale: audible, not loud
RINGBACK_ON_S = 1.0
RINGBACK_OFF_S = 4.0


def tone_cycle_pcm(
    frequency_hz: float = HOLD_FREQUENCY_HZ,
    on_s: float = HOLD_ON_S,
    off_s: float = HOLD_OFF_S,
    amplitude: float = HOLD_AMPLITUDE,
) -> bytes:
    """One on/off cycle as PCM16 LE, a whole number of 20 ms frames."""
    on = round(on_s * SAMPLE_RATE / FRAME_SAMPLES) * FRAME_SAMPLES
    off = round(off_s * SAMPLE_RATE / FRAME_SAMPLES) * FRAME_SAMPLES
    peak = amplitude * 32767
    samples = [
        int(peak * math.sin(2 * math.pi * frequency_hz * n / SAMPLE_RATE)) for n in range(on)
    ]
    samples += [0] * off
    return struct.pack(f"<{len(samples)}h", *samples)


@cache
def _cycle_frames(
    codec_name: str,
    encode: Callable[[bytes], bytes],
    on_s: float = HOLD_ON_S,
    off_s: float = HOLD_OFF_S,
) -> tuple[bytes, ...]:
    pcm = tone_cycle_pcm(on_s=on_s, off_s=off_s)
    step = FRAME_SAMPLES * 2
    return tuple(encode(pcm[i : i + step]) for i in range(0, len(pcm), step))


def hold_tone_frames(
    codec_name: str, encode: Callable[[bytes], bytes], seconds: float
) -> tuple[bytes, ...]:
    """The hold tone for at least `seconds`, encoded once per codec and repeated."""
    cycle = _cycle_frames(codec_name, encode)
    cycles = max(1, math.ceil(seconds / (len(cycle) * FRAME_SAMPLES / SAMPLE_RATE)))
    return cycle * cycles


def ringback_frames(
    codec_name: str, encode: Callable[[bytes], bytes], seconds: float
) -> tuple[bytes, ...]:
    """The ringback tone (1 s on, 4 s off) for at least `seconds`, encoded once per codec."""
    cycle = _cycle_frames(codec_name, encode, RINGBACK_ON_S, RINGBACK_OFF_S)
    cycles = max(1, math.ceil(seconds / (len(cycle) * FRAME_SAMPLES / SAMPLE_RATE)))
    return cycle * cycles
