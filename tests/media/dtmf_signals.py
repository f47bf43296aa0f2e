"""Generated DTMF signals for the in-band detector's tests (and the SIPp pcaps).

Levels are in dBm0 per tone (0 dBm0 = `DBM0_PEAK` peak in 16-bit PCM); audio
goes through real G.711 (the codec's own tables, applied with numpy) exactly
as a phone's would.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import numpy.typing as npt

from voicebot.media.g711 import Codec
from voicebot.media.inband_dtmf import DBM0_PEAK, FRAME, HIGH, KEYS, LOW, InbandDtmfDetector

RATE = 8000
Signal = npt.NDArray[np.float64]

#: What the callers say, over which they key (tests and bench/full_duplex.py).
CALLER_SPEECH = {
    "en": "Hello, this is the sales department. We can deliver the order on Tuesday "
    "between nine and twelve. The price is one thousand five hundred, with the discount.",
    "ru": "Добрый день, отдел продаж. Заказ доставим во вторник с девяти до двенадцати. "
    "Цена тысяча пятьсот рублей со скидкой.",
    "uk": "Добрий день, відділ продажу. Замовлення доставимо у вівторок. "
    "Ціна тисяча п'ятсот гривень зі знижкою.",
}


def caller_speech(tmp: Path) -> Signal:
    """`CALLER_SPEECH` spoken by espeak-ng (150 words a minute), one language
    after another, as 8 kHz linear PCM at espeak's own level (scale it)."""
    parts = []
    for lang, text in CALLER_SPEECH.items():
        wav = tmp / f"{lang}.wav"
        subprocess.run(["espeak-ng", "-v", lang, "-s", "150", "-w", str(wav), text],
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        raw = subprocess.run(["sox", str(wav), "-t", "raw", "-r", "8000", "-c", "1", "-b", "16",
                              "-e", "signed-integer", "-"], check=True, capture_output=True,
                             timeout=60).stdout  # fmt: skip
        wav.unlink()
        parts.append(np.frombuffer(raw, dtype="<i2").astype(np.float64))
    return np.concatenate(parts)


def key_frequencies(key: str) -> tuple[float, float]:
    index = KEYS.index(key)
    return LOW[index // 4], HIGH[index % 4]


def dtmf(
    key: str,
    ms: float,
    *,
    dbm0: float = -10.0,
    dev_low: float = 0.0,
    dev_high: float = 0.0,
    twist_db: float = 0.0,
    phase: float = 0.3,
) -> Signal:
    """Tone pair of `key`; `twist_db` is the high tone's level minus the low tone's."""
    low, high = key_frequencies(key)
    t = np.arange(round(ms * RATE / 1000)) / RATE
    a_low = DBM0_PEAK * 10 ** (dbm0 / 20)
    a_high = a_low * 10 ** (twist_db / 20)
    return a_low * np.sin(2 * np.pi * low * (1 + dev_low) * t + phase) + a_high * np.sin(
        2 * np.pi * high * (1 + dev_high) * t + 2 * phase
    )


def silence(ms: float) -> Signal:
    return np.zeros(round(ms * RATE / 1000))


def keyed(keys: str, *, tone_ms: float = 80, pause_ms: float = 80, **tone: float) -> Signal:
    """Each key as a tone then a pause."""
    parts = [silence(pause_ms)]
    for key in keys:
        parts += [dtmf(key, tone_ms, **tone), silence(pause_ms)]
    return np.concatenate(parts)


def white_noise(n: int, power: float, rng: np.random.Generator) -> Signal:
    return rng.normal(0.0, np.sqrt(power), n)


def _tables(codec: Codec) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int16]]:
    encode = np.array(codec._encode, dtype=np.uint8)  # indexed by the uint16 view of a sample
    decode = np.frombuffer(codec.decode(bytes(range(256))), dtype="<i2")
    return encode, decode


def g711_encode(signal: Signal, codec: Codec) -> bytes:
    pcm = np.clip(np.round(signal), -32768, 32767).astype("<i2")
    return _tables(codec)[0][pcm.view("<u2")].tobytes()


def through_g711(signal: Signal, codec: Codec) -> npt.NDArray[np.int16]:
    """What the far end decodes: the signal encoded and decoded with `codec`."""
    encoded = np.frombuffer(g711_encode(signal, codec), dtype=np.uint8)
    return _tables(codec)[1][encoded].reshape(np.shape(signal))


def detect(signal: npt.ArrayLike, *, offset: int = 0) -> str:
    """Keys one call's detector reports over `signal`, fed frame by frame."""
    samples = np.concatenate([np.zeros(offset), np.asarray(signal, dtype=np.float64)])
    samples = np.concatenate([samples, np.zeros((-len(samples)) % FRAME + 2 * FRAME)])
    detector = InbandDtmfDetector()
    slot = detector.open()
    keys = []
    for frame in samples.reshape(-1, 1, FRAME):
        keys += [key for _, key in detector.analyse(frame, [slot])]
    return "".join(keys)


def detect_many(streams: npt.ArrayLike) -> list[str]:
    """Keys per row of `streams` (calls x samples), all rows analysed together per frame."""
    audio = np.asarray(streams, dtype=np.float32)
    calls, samples = audio.shape
    detector = InbandDtmfDetector(capacity=calls)
    slots = [detector.open() for _ in range(calls)]
    found = [""] * calls
    for start in range(0, samples - FRAME + 1, FRAME):
        for row, key in detector.analyse(audio[:, start : start + FRAME], slots):
            found[row] += key
    return found
