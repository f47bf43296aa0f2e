"""In-band DTMF detector cost per media tick, for 100 / 500 / 1000 calls.

    python bench/inband_dtmf.py [--calls 100,500,1000] [--ticks 500] [--audio noise] [--edges]

Each call feeds one 20 ms frame per tick of real G.711-decoded audio (the
full-duplex bench's caller speech, or white noise with `--audio noise`, with a
DTMF key every second, so the tracker's key path runs too) to
`InbandDtmfReceiver` exactly as `RtpSession.on_audio` does, and the tick
(`on_tick`: stack every ready frame, one `analyse`) is timed. Printed per N:

  feed      the per-packet part: `InbandChannel.feed` for every call (µs/tick)
  tick      min / p50 / p99 / max of one `on_tick` over every call (ms); min is
            the cost on a quiet CPU, the rest include whatever else runs
  per call  p50 tick cost / N (µs), and p50 as % of the 20 ms tick budget
  baseline  G.711 decode of the same N frames in the same run (what every
            call's audio packet already costs), and the detector's ratio to it

`--edges` also measures the ITU-T Q.24 edges: for each parameter (frequency
deviation of either tone, twist, tone and pause duration, level, SNR) the
share of the 16 keys x 4 random frame offsets detected, through G.711 PCMU.

Also prints the threads of this process (numpy's BLAS pinned to one thread by
`voicebot/__init__.py`: no thread pool beside the event loop). Numbers are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# As voicebot/__init__.py does for the bot: one BLAS thread, set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from tests.media.dtmf_signals import caller_speech
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import PCMU
from voicebot.media.inband_dtmf import DBM0_PEAK, FRAME, HIGH, KEYS, LOW, InbandDtmfDetector
from voicebot.media.inband_receiver import InbandDtmfReceiver

RATE = 8000


def call_audio(seconds: int, rng: np.random.Generator, kind: str = "speech") -> list[bytes]:
    """G.711 frames: the full-duplex bench's caller speech (espeak-ng in en, ru and
    uk at -20 dBm0; `kind` "noise": white noise at -30 dBm0), with a -10 dBm0 key
    of 80 ms every second."""
    n = seconds * RATE
    if kind == "noise":
        signal = rng.normal(0, DBM0_PEAK * 10 ** (-30 / 20) / np.sqrt(2), n)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            speech = caller_speech(Path(tmp))
        speech = np.tile(speech, n // len(speech) + 1)[:n]
        rms = float(np.sqrt(np.mean(speech**2))) or 1.0
        signal = speech * (DBM0_PEAK * 10 ** (-20 / 20) / rms)
    t = np.arange(640) / RATE
    for second in range(seconds):
        key = KEYS.index(KEYS[second % 16])
        tone = np.sin(2 * np.pi * LOW[key // 4] * t) + np.sin(2 * np.pi * HIGH[key % 4] * t)
        start = second * RATE + 1000
        signal[start : start + 640] += DBM0_PEAK * 10 ** (-10 / 20) * tone
    pcm = np.clip(signal, -32768, 32767).astype("<i2").tobytes()
    encoded = PCMU.encode(pcm)
    return [encoded[i : i + FRAME] for i in range(0, len(encoded), FRAME)]


async def run(calls: int, ticks: int, frames: list[bytes]) -> dict[str, float]:
    clock = MediaClock(interval=3600.0)  # subscribed to, but this bench calls on_tick itself
    receiver = InbandDtmfReceiver(clock)
    keys = [0]

    def on_key(key: str) -> None:
        keys[0] += 1

    channels = [receiver.open(on_key) for _ in range(calls)]
    decode, feed, tick = [], [], []
    for n in range(ticks):
        t0 = time.perf_counter()
        pcm = [PCMU.decode(frames[(n + c * 7) % len(frames)]) for c in range(calls)]
        t1 = time.perf_counter()
        for channel, frame in zip(channels, pcm, strict=True):
            channel.feed(frame)
        t2 = time.perf_counter()
        receiver.on_tick(n)
        t3 = time.perf_counter()
        decode.append(t1 - t0)
        feed.append(t2 - t1)
        tick.append(t3 - t2)
    for channel in channels:
        channel.close()
    await clock.stop()
    tick.sort()
    return {
        "decode_ms": statistics.median(decode) * 1e3,
        "feed_us": statistics.median(feed) * 1e6,
        "min_ms": tick[0] * 1e3,
        "p50_ms": tick[len(tick) // 2] * 1e3,
        "p99_ms": tick[int(len(tick) * 0.99)] * 1e3,
        "max_ms": tick[-1] * 1e3,
        "keys_per_call_s": keys[0] / calls / (ticks * 0.02),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="100,500,1000")
    parser.add_argument("--edges", action="store_true", help="also measure the Q.24 edges")
    parser.add_argument("--ticks", type=int, default=500, help="ticks per N (500 = 10 s of audio)")
    parser.add_argument(
        "--audio",
        choices=("speech", "noise"),
        default="speech",
        help="what the calls send besides the keys: speech (as the full-duplex bench's"
        " callers) or white noise at -30 dBm0",
    )
    args = parser.parse_args()
    frames = call_audio(16, np.random.default_rng(7), args.audio)
    print(f"numpy {np.__version__}, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
          f", audio: {args.audio} with a key a second")  # fmt: skip
    print(f"{'calls':>6} {'feed µs':>8} {'tick min':>9} {'p50':>7} {'p99':>7} {'max':>7} "
          f"{'µs/call':>8} {'% of 20ms':>9} {'decode ms':>10} {'ratio':>6} "
          f"{'keys/call/s':>11}")  # fmt: skip
    for calls in (int(x) for x in args.calls.split(",")):
        r = asyncio.run(run(calls, args.ticks, frames))
        print(
            f"{calls:>6} {r['feed_us']:>8.0f} {r['min_ms']:>9.3f} {r['p50_ms']:>7.3f} "
            f"{r['p99_ms']:>7.3f} "
            f"{r['max_ms']:>7.3f} {r['p50_ms'] * 1e3 / calls:>8.2f} "
            f"{r['p50_ms'] / 20 * 100:>8.1f}% {r['decode_ms']:>10.3f} "
            f"{r['p50_ms'] / r['decode_ms']:>5.1f}x {r['keys_per_call_s']:>11.2f}"
        )
    print(f"threads in this process: {len(os.listdir('/proc/self/task'))}")
    if args.edges:
        edges()


def _tone(key: str, ms: float, dbm0: float = -10, dev: tuple[float, float] = (0, 0),
          twist_db: float = 0) -> np.ndarray:  # fmt: skip
    index = KEYS.index(key)
    t = np.arange(round(ms * 8)) / RATE
    a = DBM0_PEAK * 10 ** (dbm0 / 20)
    return a * np.sin(2 * np.pi * LOW[index // 4] * (1 + dev[0]) * t + 0.3) + a * 10 ** (
        twist_db / 20
    ) * np.sin(2 * np.pi * HIGH[index % 4] * (1 + dev[1]) * t + 0.6)


def _heard(
    signals: list[tuple[np.ndarray, str]], rng: np.random.Generator, snr_db: float | None = None
) -> float:
    """Share of `signals` whose detected keys are exactly the expected string."""
    encode = np.array(PCMU._encode, dtype=np.uint8)
    decode = np.frombuffer(PCMU.decode(bytes(range(256))), dtype="<i2")
    length = max(len(s) for s, _ in signals) + 3 * FRAME
    rows = []
    for signal, _ in signals:
        if snr_db is not None:
            power = np.mean(signal[np.abs(signal) > 0] ** 2) / 10 ** (snr_db / 10)
            signal = signal + rng.normal(0, np.sqrt(power), len(signal))
        offset = int(rng.integers(0, FRAME))
        row = np.zeros(length)
        row[offset + FRAME : offset + FRAME + len(signal)] = signal
        pcm = np.clip(np.round(row), -32768, 32767).astype("<i2")
        rows.append(decode[encode[pcm.view("<u2")]])
    audio = np.stack(rows).astype(np.float32)
    detector = InbandDtmfDetector(capacity=len(rows))
    slots = [detector.open() for _ in rows]
    found = [""] * len(rows)
    for start in range(0, length - FRAME + 1, FRAME):
        for row, key in detector.analyse(audio[:, start : start + FRAME], slots):
            found[row] += key
    return sum(f == want for f, (_, want) in zip(found, signals, strict=True)) / len(signals)


def edges() -> None:
    rng = np.random.default_rng(24)
    gap = np.zeros(800)
    keys = [k for k in KEYS for _ in range(4)]

    def press(key: str, **kw: Any) -> tuple[np.ndarray, str]:
        return np.concatenate([gap, _tone(key, 80, **kw), gap]), key

    def row(label: str, values: list[float], make: Callable[[float], float], unit: str) -> None:
        shares = [make(v) for v in values]
        cells = "  ".join(
            f"{v:+g}{unit}:{s * 100:3.0f}%" for v, s in zip(values, shares, strict=True)
        )
        print(f"{label:<26} {cells}")

    print("\nQ.24 edges, % of 16 keys x 4 offsets heard exactly (G.711 PCMU):")
    devs = [-4.0, -3.5, -3.0, -2.5, -2.0, -1.5, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    row(
        "low tone deviation",
        devs,
        lambda d: _heard([press(k, dev=(d / 100, 0)) for k in keys], rng),
        "%",
    )
    row(
        "high tone deviation",
        devs,
        lambda d: _heard([press(k, dev=(0, d / 100)) for k in keys], rng),
        "%",
    )
    row(
        "twist (high - low)",
        [-10, -9, -8, 4, 5, 6],
        lambda t: _heard([press(k, twist_db=t) for k in keys], rng),
        "dB",
    )
    row(
        "tone duration",
        [20, 25, 30, 35, 40],
        lambda ms: _heard([(np.concatenate([gap, _tone(k, ms), gap]), k) for k in keys], rng),
        "ms",
    )
    row(
        "pause between two presses",
        [10, 20, 30, 40],
        lambda ms: _heard(
            [
                (
                    np.concatenate([gap, _tone(k, 60), np.zeros(round(ms * 8)), _tone(k, 60), gap]),
                    k + k,
                )
                for k in keys
            ],
            rng,
        ),
        "ms",
    )
    row(
        "level per tone",
        [-25, -30, -33, -36, -38, -40],
        lambda db: _heard([press(k, dbm0=db) for k in keys], rng),
        "dBm0",
    )
    row(
        "white noise at -25 dBm0",
        [20, 15, 12, 10],
        lambda snr: _heard([press(k, dbm0=-25) for k in keys], rng, snr_db=snr),
        "dB SNR",
    )


if __name__ == "__main__":
    main()
