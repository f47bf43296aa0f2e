"""In-band digits exactly once, offline: the full-duplex bench's own call audio, no network.

    python bench/inband_exact.py [--seeds 1,2,3] [--calls 500] [--tone-dbm0=-10,-13]
        [--under-speech clear=0.8,clear=0.75,0.5/4,0.3/4] [--talkoff EXTRA]

Each call is what `bench/loadgen.py --mode inband` sends: the bench's speech
loop (`full_duplex.make_speech`: espeak-ng en/ru/uk), each call starting at a
random frame of it, with the keys ``3#1500#`` (100 ms presses, 200 ms gaps,
starting 0.3-3.3 s in) then the confirming ``1`` 1-2 s later, each press the
key's two tones added to the speech from a frame boundary on (loadgen's
`dtmf_tone` and `ulaw_encode`, as `_press_packets` does). Every call's
mu-law goes through `PCMU.decode` and all calls are fed to one
`InbandDtmfDetector` a 20 ms frame at a time, as the media tick does.

Printed per configuration of the detector (the clear share alone, as before
`UNDER_SPEECH_TONE_FRACTION` existed, or a share/offset pair for windows
under speech) and tone level: calls exact per seed (heard exactly
``3#1500#1``), all seeds, digits missed, digits doubled (a key heard more
often than it was pressed) and false digits (keys heard that were not
pressed). With `--talkoff EXTRA`: false digits, through PCMU, in the talk-off
test's 36 minutes of speech and music (tests/media/test_inband_talkoff.py)
and in EXTRA fresh 108-minute corpora made the same way with other random
voices, speeds, gains and chords: the talk-off margin of each configuration.
Numbers are printed, never asserted. 3 x 500 calls take about 2 s per
configuration; `--talkoff 2` adds about 90 s to make the audio and 10 s per
configuration.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from loadgen import SAMPLES, dtmf_tone, ulaw_encode  # noqa: E402

from voicebot.media import inband_dtmf  # noqa: E402
from voicebot.media.g711 import PCMU  # noqa: E402
from voicebot.media.inband_dtmf import DBM0_PEAK, FRAME, InbandDtmfDetector  # noqa: E402

KEYS, CONFIRM = "3#1500#", "1"
PRESS_FRAMES, GAP_FRAMES = 5, 10  # loadgen's --press-ms 100, --gap-ms 200
TONE_DBM0 = -10.0


def speech_loop() -> np.ndarray:
    """The bench's speech (made as full_duplex.py makes it), decoded to linear PCM."""
    from full_duplex import make_speech

    with tempfile.TemporaryDirectory() as tmp:
        raw = make_speech(Path(tmp) / "speech.ulaw").read_bytes()
    raw = raw[: len(raw) // SAMPLES * SAMPLES]
    return np.frombuffer(PCMU.decode(raw), dtype="<i2").astype(np.float64)


def calls_audio(
    speech: np.ndarray, calls: int, seed: int, tone_dbm0: float = TONE_DBM0
) -> tuple[np.ndarray, list[str]]:
    """(calls, samples) of decoded audio as the bot receives it, and each call's keys."""
    rng = np.random.default_rng(seed)
    tones = {k: dtmf_tone(k, PRESS_FRAMES, tone_dbm0) for k in set(KEYS + CONFIRM)}
    lead_max, confirm_max = 165, 100  # frames: up to 3.3 s before the keys, 2 s to the confirm
    frames = lead_max + len(KEYS) * (PRESS_FRAMES + GAP_FRAMES) + confirm_max + PRESS_FRAMES + 10
    n = len(speech)
    out = np.empty((calls, frames * FRAME))
    for c in range(calls):
        start = int(rng.integers(0, n // FRAME)) * FRAME
        signal = speech[(start + np.arange(frames * FRAME)) % n].copy()
        at = int(rng.integers(15, lead_max))
        for key in KEYS:
            signal[at * FRAME : (at + PRESS_FRAMES) * FRAME] += tones[key]
            at += PRESS_FRAMES + GAP_FRAMES
        at += int(rng.integers(50, confirm_max))
        signal[at * FRAME : (at + PRESS_FRAMES) * FRAME] += tones[CONFIRM]
        out[c] = signal
    coded = np.frombuffer(ulaw_encode(out.ravel()), dtype=np.uint8)
    pcm = np.frombuffer(PCMU.decode(coded.tobytes()), dtype="<i2")
    return pcm.reshape(calls, -1).astype(np.float32), [KEYS + CONFIRM] * calls


def detect(audio: np.ndarray) -> list[str]:
    calls = len(audio)
    detector = InbandDtmfDetector(capacity=calls)
    slots = [detector.open() for _ in range(calls)]
    found = [""] * calls
    for start in range(0, audio.shape[1] - FRAME + 1, FRAME):
        for row, key in detector.analyse(audio[:, start : start + FRAME], slots):
            found[row] += key
    return found


def score(found: list[str], sent: list[str]) -> dict[str, int]:
    missed = doubled = false = 0
    for heard, want in zip(found, sent, strict=True):
        h, w = Counter(heard), Counter(want)
        missed += sum((w - h).values())
        doubled += sum(min(v, (h - w)[k]) for k, v in w.items() if (h - w)[k])
        false += sum(v for k, v in (h - w).items() if k not in w)
    exact = sum(h == w for h, w in zip(found, sent, strict=True))
    return {"exact": exact, "missed": missed, "doubled": doubled, "false": false}


def talkoff_corpora(extra: int) -> list[tuple[str, np.ndarray]]:
    """The talk-off test's 36 minutes of speech and music, and `extra` fresh 108-minute
    corpora made the same way with other random choices (voices, speeds, chords)."""
    import random

    from tests.media import test_inband_talkoff as talkoff

    corpora = []
    minutes, music = dict(talkoff.MINUTES), talkoff.MUSIC_MINUTES
    for n in range(extra + 1):
        if n:

            class Fresh(random.Random):
                def __init__(self, seed: object, tag: str = f"fresh{n}") -> None:
                    super().__init__(f"{seed}{tag}")

            talkoff.random = type("Random", (), {"Random": Fresh})  # type: ignore[assignment]
            talkoff.MINUTES = {lang: 3 * m for lang, m in minutes.items()}
            talkoff.MUSIC_MINUTES = 3 * music
        with tempfile.TemporaryDirectory() as tmp:
            audio = [talkoff._speech(lang, Path(tmp)) for lang in talkoff.MINUTES]
            audio.append(talkoff._music(Path(tmp)))
        whole = np.concatenate(audio)
        corpora.append((f"{len(whole) / 8000 / 60:.0f} min" + (f" #{n}" if n else ""), whole))
    talkoff.random, talkoff.MINUTES, talkoff.MUSIC_MINUTES = random, minutes, music
    return corpora


def false_digits(audio: np.ndarray, calls: int = 64) -> int:
    """Keys heard in `audio` (no key in it) through PCMU, cut into `calls` side by side."""
    from tests.media.dtmf_signals import detect_many, through_g711

    per = len(audio) // calls // FRAME * FRAME
    streams = through_g711(audio[: calls * per], PCMU).reshape(calls, per)
    return sum(len(keys) for keys in detect_many(streams))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--tone-dbm0", default="-10", help="levels per tone to run, e.g. -10,-13")
    parser.add_argument(
        "--under-speech",
        default="",
        help="configurations to run: SHARE/HZ sets UNDER_SPEECH_TONE_FRACTION/"
        "UNDER_SPEECH_OFFSET_HZ, clear=SHARE runs the clear share alone at MIN_TONE_FRACTION="
        "SHARE (the detector before); e.g. clear=0.8,clear=0.75,0.5/4,0.3/4 "
        "(default: clear=0.8, then the module's own)",
    )
    parser.add_argument(
        "--talkoff",
        type=int,
        default=-1,
        metavar="EXTRA",
        help="also count false digits in the talk-off test's corpus and EXTRA fresh "
        "108-minute ones (about 40 s each to make)",
    )
    args = parser.parse_args()
    speech = speech_loop()
    rms_dbm0 = 20 * np.log10(float(np.sqrt(np.mean(speech**2))) * np.sqrt(2) / DBM0_PEAK)
    two = dtmf_tone("1", 50, 0.0)  # two sines of peak a: RMS a
    tone_dbm0 = 20 * np.log10(float(np.sqrt(np.mean(two**2))) / DBM0_PEAK)
    print(f"speech loop {len(speech) / 8000:.1f} s at {rms_dbm0:.1f} dBm0 RMS; keys {KEYS} then "
          f"{CONFIRM}, {PRESS_FRAMES * 20} ms presses; loadgen's tone of 'x dBm0' is "
          f"x{tone_dbm0:+.1f} dBm0 per tone by G.711's 0 dBm0 (the speech is as much above "
          f"full_duplex's -20 dBm0: their ratio is as named)")  # fmt: skip
    d = inband_dtmf
    default = (d.MIN_TONE_FRACTION, d.UNDER_SPEECH_TONE_FRACTION, d.UNDER_SPEECH_OFFSET_HZ)
    configs: list[tuple[str, float, float, float]] = []  # label, clear share, speech share, Hz
    for spec in args.under_speech.split(",") if args.under_speech else []:
        if spec.startswith("clear="):
            share = float(spec.removeprefix("clear="))
            configs.append((f"clear {share:g} only", share, 1.0, 0.0))
        else:
            share, hz = (float(v) for v in spec.split("/"))
            configs.append((f"{share:g} within {hz:g} Hz", default[0], share, hz))
    configs = configs or [
        (f"clear {default[0]:g} only", default[0], 1.0, 0.0),
        (f"{default[1]:g} within {default[2]:g} Hz", *default),
    ]
    seeds = [int(s) for s in args.seeds.split(",")]
    levels = [float(v) for v in args.tone_dbm0.split(",")]
    audio = {(db, seed): calls_audio(speech, args.calls, seed, db) for db in levels
             for seed in seeds}  # fmt: skip
    corpora = talkoff_corpora(args.talkoff) if args.talkoff >= 0 else []
    print(f"{'config':>18} {'dBm0':>5} {'exact per seed':>{6 * len(seeds)}} "
          f"{'all':>11} {'missed':>6} {'doubled':>7} {'false':>5}"
          + "".join(f" {'talk-off ' + name:>17}" for name, _ in corpora))  # fmt: skip
    for label, clear, fraction, hz in configs:
        d.MIN_TONE_FRACTION, d.UNDER_SPEECH_TONE_FRACTION, d.UNDER_SPEECH_OFFSET_HZ = (
            clear,
            fraction,
            hz,
        )
        talk = "".join(f" {false_digits(a):>17}" for _, a in corpora)
        for i, db in enumerate(levels):
            total = Counter[str]()
            exact = []
            for seed in seeds:
                pcm, sent = audio[db, seed]
                s = score(detect(pcm), sent)
                total.update(s)
                exact.append(s["exact"])
            print(f"{label:>18} {db:>5g} {' '.join(f'{e:>5}' for e in exact)} "
                  f"{total['exact']:>5}/{args.calls * len(seeds):<5} {total['missed']:>6} "
                  f"{total['doubled']:>7} {total['false']:>5}"
                  + (talk if i == 0 else ""))  # fmt: skip
    d.MIN_TONE_FRACTION, d.UNDER_SPEECH_TONE_FRACTION, d.UNDER_SPEECH_OFFSET_HZ = default


if __name__ == "__main__":
    main()
