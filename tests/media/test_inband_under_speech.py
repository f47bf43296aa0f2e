"""In-band keys mixed into loud speech, as bench/full_duplex.py's callers key them.

A phone that adds its tones to the microphone while its user talks: the keys
`3#1500#1` (100 ms presses, 200 ms gaps, the confirming key later) at
-10 dBm0 per tone over espeak-ng speech in en, ru and uk at -20 dBm0 RMS,
each press starting on the 20 ms packet grid (the bench's loadgen mixes a
press into whole packets), every call at its own place in the speech. In a
loud syllable the tones hold only 55-80 % of a window's energy: with the
clear share (`MIN_TONE_FRACTION`) alone about one call in a hundred lost a
key here; near-nominal tones under speech (`UNDER_SPEECH_TONE_FRACTION`)
bring every call back.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.media.dtmf_signals import caller_speech, detect_many, dtmf, through_g711
from voicebot.media.g711 import PCMU
from voicebot.media.inband_dtmf import DBM0_PEAK, FRAME

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs espeak-ng and sox (Debian packages espeak-ng, sox)",
)

KEYS, CONFIRM = "3#1500#", "1"
PRESS, GAP = 5, 10  # frames: 100 ms presses, 200 ms gaps


def speech_loop(tmp: Path) -> np.ndarray:
    speech = caller_speech(tmp)
    # -20 dBm0 RMS over the loop, pauses included
    return speech * (10 ** (-20 / 20) * DBM0_PEAK / np.sqrt(2) / np.sqrt(np.mean(speech**2)))


def keyed_calls(speech: np.ndarray, calls: int, seed: int) -> np.ndarray:
    """(calls, samples): each call's speech from its own frame on, the keys mixed in."""
    rng = np.random.default_rng(seed)
    lead, confirm = 165, 100  # frames: the keys start within 3.3 s, the confirm 1-2 s later
    frames = lead + len(KEYS) * (PRESS + GAP) + confirm + PRESS + 10
    tone = {key: dtmf(key, PRESS * 20, dbm0=-10, phase=0) for key in KEYS + CONFIRM}
    out = np.empty((calls, frames * FRAME))
    for call in range(calls):
        start = int(rng.integers(0, len(speech) // FRAME)) * FRAME
        out[call] = speech[(start + np.arange(frames * FRAME)) % len(speech)]
        at = int(rng.integers(15, lead))
        for key in KEYS:
            out[call, at * FRAME : (at + PRESS) * FRAME] += tone[key]
            at += PRESS + GAP
        at += int(rng.integers(50, confirm))
        out[call, at * FRAME : (at + PRESS) * FRAME] += tone[CONFIRM]
    return out


def test_every_key_mixed_into_loud_speech_is_heard_once(tmp_path: Path) -> None:
    speech = speech_loop(tmp_path)
    calls = 500
    heard = detect_many(through_g711(keyed_calls(speech, calls, seed=2), PCMU))
    wrong = [h for h in heard if h != KEYS + CONFIRM]
    assert wrong == [], f"{len(wrong)}/{calls} calls wrong: {wrong}"
