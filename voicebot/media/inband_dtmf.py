"""In-band DTMF: keys sent as tones in the audio, detected for all calls at once.

Some phones, analogue gateways and trunks send keys only as tones (and do so
when the SDP answer has no telephone-event). `InbandDtmfDetector` finds them
in decoded 8 kHz audio, judged as ITU-T Q.24 judges a DTMF receiver:

* frequency deviation of either tone <= 1.5 % accepted, >= 3.5 % rejected
  (the limit is `MAX_DEVIATION`, half-way);
* twist: the high tone may be up to 8 dB weaker (normal) or 4 dB stronger
  (reverse) than the low one (limits `NORMAL_TWIST_DB`, `REVERSE_TWIST_DB`);
* a tone of 40 ms is a key, one of 20 ms is not; a pause of 40 ms separates
  two presses of the same key, an interruption of 10 ms does not;
* works from -25 dBm0 per tone, and with 15 dB SNR of white noise.

How (one numpy product per tick for every call): each call's 20 ms frame is
cut into four 5 ms sub-blocks, and one matrix product gives every
sub-block's DFT at the eight DTMF frequencies. Referred to one phase origin
(the frame's start), sub-blocks simply add up to 20 ms windows every 5 ms,
four per frame (the last three sub-blocks of the previous frame are kept).
A window holds a
tone pair when those two frequencies carry most of its energy
(`MIN_TONE_FRACTION`). The frequency is measured, not guessed from a bin:
the phase advance of a frequency between windows 5 ms apart gives its
offset from nominal to well under 1 Hz, which is what separates 1.5 % from
3.5 % (a plain Goertzel over 20 ms has 50 Hz bins). A key is reported once
four windows in a row (35 ms of tone) carry it, and released after
`RELEASE_WINDOWS` windows without it (a 40 ms pause always gives that many,
a 10 ms dropout never does).

Keys over loud speech (a phone that adds its tones to the microphone while
its user talks): in a loud syllable -10 dBm0 tones hold only 55-85 % of a
window's energy, and with the clear share alone 11 of 1500 calls of the
full-duplex bench's own audio lost a key (bench/inband_exact.py). Simply
lowering the share lets speech in: 0.75 gave 10 false digits in 216
minutes of fresh talk-off speech and music, 0.7 gave 24. What tells the two
apart, measured there: the vowels and chords that imitate a key are steady (their offsets
agree from window to window as well as a real tone's), but their harmonics
land anywhere in the +-2.5 % accept band, mostly 10-20 Hz off; a tone
generator is on frequency. So a window with only `UNDER_SPEECH_TONE_FRACTION`
of its energy in the pair still carries the key when both tones are within
`UNDER_SPEECH_OFFSET_HZ` of nominal, and counts half towards a press
(`CLEAR_WEIGHT`): 55 ms of such tone. The bench's calls: 1500/1500 exact;
no false digit in those 216 minutes beyond the 5 that the clear share alone
already gives there, with margin both ways (none added down to a share of
0.3 at 4 Hz, nor up to 7 Hz at 0.5; bench/README.md, inband_exact.py).

The API other code uses (bench, calls)::

    detector = InbandDtmfDetector()
    slot = detector.open()                       # one per call
    keys = detector.analyse(frames, slots)       # frames: (M, 160) samples
    # -> [(row, key), ...]: row indexes frames; at most one key per row
    detector.close(slot)

`InbandDtmfReceiver` (voicebot.media.inband_receiver) runs it on the media
clock's tick. Cost: about 1.3-1.5 ms per tick for 500 calls of speech with
a key a second (bench/inband_dtmf.py; 20 % less than measuring every
window in full, see `_classify`; the detector's own `analyse` 35 % less).
BLAS: the product is small and runs on one thread (`voicebot/__init__.py`
sets OPENBLAS_NUM_THREADS=1 before numpy loads): a BLAS thread pool measured
3x slower here, contending for the same cores as the event loop.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 8000
FRAME = 160  # samples per 20 ms frame: the detector's input unit
SUB = 40  # samples per 5 ms sub-block: window hop
SUBS = FRAME // SUB  # sub-blocks per frame = windows per frame
WINDOW_SUBS = 4  # a window is 4 sub-blocks = 20 ms

LOW = (697.0, 770.0, 852.0, 941.0)
HIGH = (1209.0, 1336.0, 1477.0, 1633.0)
FREQS = np.array(LOW + HIGH)
KEYS = "123A456B789C*0#D"  # KEYS[4 * row + column]

#: Midway between Q.24's must-accept 1.5 % and must-reject 3.5 %.
MAX_DEVIATION = 0.025
NORMAL_TWIST_DB = 9.0  # high tone weaker than low; Q.24 asks for 8 dB
REVERSE_TWIST_DB = 5.0  # high tone stronger than low; Q.24 asks for 4 dB
#: Each tone at least this level (Q.24: -25 dBm0 per tone must work, less 8 dB of twist).
MIN_LEVEL_DBM0 = -36.0
#: The two tones must hold this share of the window's energy (15 dB SNR leaves 0.97).
MIN_TONE_FRACTION = 0.8
#: Once a key is down (or a run of it has begun), a window still carries it when
#: its two tones hold this share of the energy: speech over a held key must not
#: split one press into two, nor hide it (see `_track`).
HOLD_TONE_FRACTION = 0.3
#: The same for a run of windows not yet reported as a key: stricter, as a run
#: bridged by weak windows is what speech or music could fake.
BRIDGE_TONE_FRACTION = 0.5
#: Under loud speech the tones' share of a window falls below MIN_TONE_FRACTION
#: (-10 dBm0 tones in -20 dBm0 speech: 0.55-0.85). Such a window still carries a
#: key when its share is at least this and both tones lie within
#: UNDER_SPEECH_OFFSET_HZ of nominal (see `_classify`).
UNDER_SPEECH_TONE_FRACTION = 0.5
UNDER_SPEECH_OFFSET_HZ = 4.0
ON_WINDOWS = 4  # consecutive windows carrying a key to report it (35 ms of tone)
#: A clear window counts this many times towards ON_WINDOWS, one under speech
#: once: a press made of windows under speech only takes 2 x ON_WINDOWS (55 ms).
#: A share falls as a tone leaves a window (a tone over a quarter of it holds a
#: quarter of its energy), so a 20 ms tone in silence gives windows of share
#: 0.6-0.75 at its edges: they must not make it a key.
CLEAR_WEIGHT = 2
RELEASE_WINDOWS = 6  # consecutive windows without it to release it (a pause)

#: Peak of a 0 dBm0 sine in 16-bit linear PCM (G.711: +3.17 dBm0 is full scale).
DBM0_PEAK = 22700.0

_OMEGA = 2 * np.pi * FREQS / SAMPLE_RATE
_n = np.arange(SUB)
# Real basis: sub-block (.., 40) @ basis -> (.., 16): real parts, then imaginary.
_BASIS = np.concatenate(
    [np.cos(np.outer(_n, _OMEGA)), -np.sin(np.outer(_n, _OMEGA))], axis=1
).astype(np.float32)
# Every DFT is referred to the start of the current frame: sub-block s starts
# 40 s samples in, and what is kept for the next frame moves 160 samples back.
_SUB_TURN = np.exp(-1j * np.outer(np.arange(SUBS) * SUB, _OMEGA)).astype(np.complex64)
_FRAME_TURN = np.exp(1j * _OMEGA * FRAME).astype(np.complex64)
_HZ_PER_RADIAN = SAMPLE_RATE / (2 * np.pi * SUB)
_WINDOW = SUB * WINDOW_SUBS
_LEVEL_FLOOR = (10 ** (MIN_LEVEL_DBM0 / 20) * DBM0_PEAK * _WINDOW / 2) ** 2  # as |X|^2
_MAX_OFFSET_HZ = MAX_DEVIATION * FREQS


def _exact_leakage(offset_hz: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    """Power a 20 ms rectangular window keeps of a tone `offset_hz` off its frequency."""
    x = np.clip(np.abs(offset_hz), 0, 60.0) * (_WINDOW / SAMPLE_RATE)
    return np.maximum(np.sinc(x) ** 2, 0.05).astype(np.float32)


#: `_exact_leakage` every 1/40 Hz from 0 to 60 Hz: `_leakage` looks it up (the
#: sinc's numpy calls were a tenth of the detector's cost at 500 calls; the
#: nearest entry is within 0.3 % of the exact value, 0.01 dB).
_LEAKAGE_STEPS_PER_HZ = 40
_LEAKAGE_TABLE = _exact_leakage(np.arange(60 * _LEAKAGE_STEPS_PER_HZ + 1) / _LEAKAGE_STEPS_PER_HZ)


def _leakage(offset_hz: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """`_exact_leakage` of the nearest 1/40 Hz (beyond 60 Hz: 60 Hz's)."""
    i = (np.abs(offset_hz) * _LEAKAGE_STEPS_PER_HZ + 0.5).astype(np.intp)
    np.clip(i, 0, len(_LEAKAGE_TABLE) - 1, out=i)  # (and a NaN's garbage index)
    return _LEAKAGE_TABLE[i]


#: The least power a tone within MAX_DEVIATION of each frequency keeps in its
#: bin (the leakage falls monotonically out to the deviation limit), a hair
#: under it for rounding: what `_classify` bounds a window's chances with.
_MIN_LEAKAGE = _leakage(_MAX_OFFSET_HZ.astype(np.float32)) * np.float32(0.999)


class InbandDtmfDetector:
    """Vectorised DTMF receiver for many calls; each call is a slot of its state arrays."""

    _tail: npt.NDArray[np.complex64]  # (slots, 3, 8): the last 3 sub-block DFTs
    _tail_energy: npt.NDArray[np.float32]  # (slots, 3)
    _last_window: npt.NDArray[np.complex64]  # (slots, 8): for the next phase advance
    _held: npt.NDArray[np.int8]  # key index held down, -1 none
    _run_key: npt.NDArray[np.int8]  # label of the current run of windows
    _run: npt.NDArray[np.int16]  # its length
    _gap: npt.NDArray[np.int16]  # windows since the held key was last seen

    def __init__(self, capacity: int = 64) -> None:
        self._free: list[int] = []
        self._capacity = 0
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        old = self._capacity

        def grow(name: str, shape: tuple[int, ...], dtype: object, fill: object = 0) -> None:
            arr = np.full((capacity, *shape), fill, dtype=dtype)  # type: ignore[call-overload]
            if old:
                arr[:old] = getattr(self, name)
            setattr(self, name, arr)

        grow("_tail", (WINDOW_SUBS - 1, len(FREQS)), np.complex64)  # last 3 sub-block DFTs
        grow("_tail_energy", (WINDOW_SUBS - 1,), np.float32)
        grow("_last_window", (len(FREQS),), np.complex64)
        grow("_held", (), np.int8, -1)  # key index held down, -1 none
        grow("_run_key", (), np.int8, -1)
        grow("_run", (), np.int16)
        grow("_gap", (), np.int16)
        self._capacity = capacity
        self._free.extend(range(capacity - 1, old - 1, -1))

    @property
    def open_slots(self) -> int:
        return self._capacity - len(self._free)

    def open(self) -> int:
        """A slot for one call's audio, its state reset."""
        if not self._free:
            self._alloc(self._capacity * 2)
        slot = self._free.pop()
        self._tail[slot] = 0
        self._tail_energy[slot] = 0
        self._last_window[slot] = 0
        self._held[slot] = self._run_key[slot] = -1
        self._run[slot] = self._gap[slot] = 0
        return slot

    def close(self, slot: int) -> None:
        if slot not in self._free:
            self._free.append(slot)

    def analyse(self, frames: npt.ArrayLike, slots: npt.ArrayLike) -> list[tuple[int, str]]:
        """Feed one 20 ms frame per row to the slot beside it (distinct slots).

        Returns (row, key) for every key that went down in these frames.
        """
        x = np.asarray(frames, dtype=np.float32)
        slot = np.asarray(slots, dtype=np.intp)
        m = len(slot)
        if m == 0:
            return []
        sub = (x.reshape(m * SUBS, SUB) @ _BASIS).reshape(m, SUBS, 2, len(FREQS))
        blocks = np.empty((m, SUBS + WINDOW_SUBS - 1, len(FREQS)), dtype=np.complex64)
        blocks[:, : WINDOW_SUBS - 1] = self._tail[slot]
        cur = blocks[:, WINDOW_SUBS - 1 :]
        cur.real = sub[:, :, 0]
        cur.imag = sub[:, :, 1]
        cur *= _SUB_TURN
        xs = x.reshape(m, SUBS, SUB)
        energy_blocks = np.concatenate(
            [self._tail_energy[slot], np.einsum("msk,msk->ms", xs, xs)], axis=1
        )
        # Windows of 4 sub-blocks every 5 ms: with one phase reference, plain sums.
        windows = blocks[:, 0:SUBS].copy()
        energy = energy_blocks[:, 0:SUBS].copy()
        for k in range(1, WINDOW_SUBS):
            windows += blocks[:, k : k + SUBS]
            energy += energy_blocks[:, k : k + SUBS]
        before = np.empty_like(windows)
        before[:, 0] = self._last_window[slot]
        before[:, 1:] = windows[:, :-1]
        self._tail[slot] = blocks[:, SUBS:] * _FRAME_TURN
        self._tail_energy[slot] = energy_blocks[:, SUBS:]
        self._last_window[slot] = windows[:, -1] * _FRAME_TURN

        labels, weights = _classify(windows, before, energy)  # (m, 4) each
        # The key a window may continue: the one held down, else the current run's.
        held = self._held[slot]
        ongoing = np.where(held >= 0, held, self._run_key[slot]).astype(np.int8)
        # Only a call with a key under way can continue one: most calls, talking
        # with no key, skip the relaxed test (a third of the detector's cost).
        continues = np.zeros(labels.shape, dtype=np.bool_)
        active = np.flatnonzero(ongoing >= 0)
        if active.size:
            fraction, plausible = _carried(
                windows[active], before[active], energy[active], ongoing[active]
            )  # (a, 4) each
            threshold = np.where(held[active] >= 0, HOLD_TONE_FRACTION, BRIDGE_TONE_FRACTION)
            continues[active] = plausible & (fraction >= threshold[:, None])
        # Calls with no key in these windows and none under way (most of them,
        # talking or silent) only move their counters (see `_idle`); the
        # window-by-window tracking runs for the rest.
        busy = (labels >= 0).any(axis=1) | (ongoing >= 0)
        if busy.all():
            return self._track(slot, labels, weights, ongoing, continues)
        idle = ~busy
        self._idle(slot[idle], weights[idle])
        rows = np.flatnonzero(busy)
        if not rows.size:
            return []
        keys = self._track(slot[rows], labels[rows], weights[rows], ongoing[rows], continues[rows])
        return [(int(rows[r]), key) for r, key in keys]

    def _idle(self, slot: npt.NDArray[np.intp], weights: npt.NDArray[np.int8]) -> None:
        """`_track` for calls with no key in any window and none under way,
        in one step: every window is "no key", the run of no-key windows grows
        by their weights, and nothing is held (the gap to a held key is 0)."""
        self._run[slot] = np.minimum(self._run[slot] + weights.sum(axis=1, dtype=np.int16), 1000)
        self._gap[slot] = 0

    def _track(
        self,
        slot: npt.NDArray[np.intp],
        labels: npt.NDArray[np.int8],
        weights: npt.NDArray[np.int8],
        ongoing: npt.NDArray[np.int8],
        continues: npt.NDArray[np.bool_],
    ) -> list[tuple[int, str]]:
        """Q.24 timing, windows oldest first: ON_WINDOWS to press, RELEASE_WINDOWS to let go.

        Hysteresis: a window that fails the strict test (`_classify`) but whose
        energy still comes largely from the key already under way (`_carries`)
        counts as that key. Speech mixed with a held key (a phone that adds its
        tones to the microphone) dips the tones' share for a syllable: without
        this, 5% of presses over speech split in two or were never reported.
        Only strict windows count towards the ON_WINDOWS of a press (relaxed ones
        bridge them), so a press still takes 35 ms of clear tone, or 55 ms of
        tone under speech (`CLEAR_WEIGHT`): the 20 ms reject is unchanged.
        """
        held, run_key = self._held[slot], self._run_key[slot]
        run, gap = self._run[slot], self._gap[slot]
        pressed = np.full(len(slot), -1, dtype=np.int8)
        for j in range(labels.shape[1]):
            label = labels[:, j]
            # Still the key under way (it was that key when the frame began)?
            relaxed = (
                (label < 0)
                & continues[:, j]
                & (ongoing >= 0)
                & ((ongoing == held) | (ongoing == run_key))
            )
            label = np.where(relaxed, ongoing, label).astype(np.int8)
            same = label == run_key
            # Only strict windows count towards a press (a clear one twice, one
            # under speech once); relaxed ones bridge.
            weight = weights[:, j]
            run = np.where(
                same, run + np.where(relaxed, 0, weight), np.where(relaxed, CLEAR_WEIGHT, weight)
            ).astype(np.int16)
            run_key = label
            gap = np.where(label == held, 0, gap + 1).astype(np.int16)
            held = np.where(gap >= RELEASE_WINDOWS, -1, held).astype(np.int8)
            down = (held < 0) & (label >= 0) & (run >= ON_WINDOWS * CLEAR_WEIGHT)
            if down.any():
                held = np.where(down, label, held).astype(np.int8)
                gap = np.where(down, 0, gap).astype(np.int16)
                pressed = np.where(down, label, pressed).astype(np.int8)
        self._held[slot], self._run_key[slot] = held, run_key
        self._run[slot], self._gap[slot] = np.minimum(run, 1000), np.minimum(gap, 1000)
        rows = np.flatnonzero(pressed >= 0)
        return [(int(r), KEYS[pressed[r]]) for r in rows]


def _offset_hz(
    windows: npt.NDArray[np.complex64],
    before: npt.NDArray[np.complex64],
    rows: npt.NDArray[np.intp],
    bins: npt.NDArray[np.intp],
) -> npt.NDArray[np.float32]:
    """Offset from nominal (Hz) of frequency `bins[i]` in flattened window `rows[i]`
    (`windows`, `before`: (n, 8)): its phase advance over one 5 ms hop."""
    turn = windows[rows, bins] * np.conj(before[rows, bins])
    return (np.arctan2(turn.imag, turn.real) * _HZ_PER_RADIAN).astype(np.float32)


def _classify(
    windows: npt.NDArray[np.complex64],
    before: npt.NDArray[np.complex64],
    energy: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.int8]]:
    """Key index (0-15) each window carries, or -1, and the window's weight
    towards a press: `CLEAR_WEIGHT` when the two tones hold MIN_TONE_FRACTION of
    its energy, 1 when they hold only UNDER_SPEECH_TONE_FRACTION but both lie
    within UNDER_SPEECH_OFFSET_HZ of nominal; inputs (m, w, 8), (m, w, 8), (m, w).

    Why nominal frequency tells a tone under speech from speech imitating
    one (measured over 144 minutes of the talk-off speech and music, see
    bench/inband_exact.py): what fakes a key is a steady vowel or chord whose
    harmonics fall inside the +-2.5 % accept band, anywhere in it (10-20 Hz
    off is typical); its frequency is as stable from window to window as a
    real tone's, so stability does not separate them. A tone generator is on
    frequency: under speech its measured offset stays within a few Hz. Off-
    nominal tones (Q.24's +-1.5 %) still need the clear share, as before.

    Only windows that could carry a key are measured (`_pair`): a tone within
    MAX_DEVIATION of nominal keeps at least `_MIN_LEAKAGE` of its power in its
    bin, which bounds from above both its level and the share it can hold.
    Windows whose strongest pair fails either bound (silence, and about nine in
    ten windows of speech) are no key, whatever their offsets; their weight
    (1) only ever counts in a run of no-key windows, which nothing reads.
    """
    shape = windows.shape[:-1]
    n = math.prod(shape)
    windows, before, energy = windows.reshape(n, -1), before.reshape(n, -1), energy.reshape(n)
    power = windows.real**2 + windows.imag**2
    low, p_low = _strongest(power, 0)
    high, p_high = _strongest(power, 4)
    floor_low, floor_high = _MIN_LEAKAGE[low], _MIN_LEAKAGE[high]
    total = np.maximum(energy, 1e-3) * (_WINDOW / 2)
    could = (
        (p_low >= _LEVEL_FLOOR * floor_low)
        & (p_high >= _LEVEL_FLOOR * floor_high)
        & (p_low / floor_low + p_high / floor_high >= UNDER_SPEECH_TONE_FRACTION * total)
    )
    labels = np.full(n, -1, dtype=np.int8)
    weights = np.ones(n, dtype=np.int8)
    idx = np.flatnonzero(could)
    if idx.size:
        low, high = low[idx], high[idx]
        fraction, plausible, off_nominal = _pair(
            power[idx], windows[idx], before[idx], energy[idx], low, high
        )
        clear = fraction >= MIN_TONE_FRACTION
        under_speech = (fraction >= UNDER_SPEECH_TONE_FRACTION) & (
            off_nominal <= UNDER_SPEECH_OFFSET_HZ
        )
        ok = (clear | under_speech) & plausible
        labels[idx] = np.where(ok, low * 4 + (high - 4), -1)
        weights[idx] = np.where(clear, CLEAR_WEIGHT, 1)
    return labels.reshape(shape), weights.reshape(shape)


def _strongest(
    power: npt.NDArray[np.float32], first: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32]]:
    """Per row of `power` (n, 8), the strongest of columns first..first+3 and its
    power: `np.argmax` (the first of equals) by columns, as numpy's reductions
    over a 4-wide axis cost a loop per row."""
    c0, c1, c2, c3 = (power[:, first + i] for i in range(4))
    m01, m23 = np.maximum(c0, c1), np.maximum(c2, c3)
    i01 = np.where(c1 > c0, first + 1, first)
    i23 = np.where(c3 > c2, first + 3, first + 2)
    later = m23 > m01
    return np.where(later, i23, i01), np.where(later, m23, m01)


def _pair(
    power: npt.NDArray[np.float32],
    windows: npt.NDArray[np.complex64],
    before: npt.NDArray[np.complex64],
    energy: npt.NDArray[np.float32],
    low: npt.NDArray[np.intp],
    high: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.bool_], npt.NDArray[np.floating[Any]]]:
    """One tone pair per window (inputs flat: (n, 8), (n, 8), (n, 8), (n,); `low`,
    `high`: frequency indexes, (n,)): the share of the window's energy the two
    tones hold, whether they are a key at all (both within MAX_DEVIATION of
    nominal, above the level floor, within the twist limits), and the larger of
    their offsets from nominal, Hz.

    Both tones of every window are picked in one flat index (a few numpy
    calls for all of them, not one per tone and quantity: numpy's per-call
    cost was most of the detector's).
    """
    n = len(low)
    rows = np.arange(n, dtype=np.intp)
    rows2 = np.concatenate([rows, rows])
    bins = np.concatenate([low, high])
    tone_power = power[rows2, bins]
    # With one phase reference for all windows, a tone's phase advance over
    # one 5 ms hop is its offset from the nominal frequency.
    offset = _offset_hz(windows, before, rows2, bins)
    # Undo what the window's leakage took from an off-frequency tone.
    tone_power = tone_power / _leakage(offset)
    p_low, p_high = tone_power[:n], tone_power[n:]
    off = np.abs(offset)
    # A tone of amplitude A over the window: |X|^2 = (A*W/2)^2, energy = A^2*W/2.
    fraction = (p_low + p_high) / (np.maximum(energy, 1e-3) * (_WINDOW / 2))
    twist_db = 10 * np.log10(np.maximum(p_high, 1e-9) / np.maximum(p_low, 1e-9))
    within = (off <= _MAX_OFFSET_HZ[bins]) & (tone_power >= _LEVEL_FLOOR)
    plausible = (
        within[:n] & within[n:] & (twist_db <= REVERSE_TWIST_DB) & (twist_db >= -NORMAL_TWIST_DB)
    )
    return fraction, plausible, np.maximum(off[:n], off[n:])


def _carried(
    windows: npt.NDArray[np.complex64],
    before: npt.NDArray[np.complex64],
    energy: npt.NDArray[np.float32],
    key: npt.NDArray[np.int8],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.bool_]]:
    """How much of each window's energy `key`'s two tones carry (one key per
    row, -1 none), and whether they are that key at all: both on frequency,
    above the level floor, within the twist limits. The relaxed test of a key
    already under way. Inputs (m, w, 8), (m, w, 8), (m, w), (m,)."""
    k = np.maximum(key, 0).astype(np.intp)
    m, w = windows.shape[:2]
    flat_windows, flat_before = windows.reshape(m * w, -1), before.reshape(m * w, -1)
    power = flat_windows.real**2 + flat_windows.imag**2
    low, high = np.repeat(k // 4, w), np.repeat(k % 4 + 4, w)
    fraction, plausible, _ = _pair(
        power, flat_windows, flat_before, energy.reshape(m * w), low, high
    )
    return (
        fraction.reshape(m, w).astype(np.float32),
        (key >= 0)[:, None] & plausible.reshape(m, w),
    )
