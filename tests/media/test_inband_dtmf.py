"""The in-band DTMF detector at every ITU-T Q.24 edge, through real G.711.

Every case runs each of the 16 keys, each at its own random (seeded) offset
from the 20 ms frame grid, so no result depends on where a tone starts.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable

import numpy as np
import pytest

from tests.media.dtmf_signals import (
    detect,
    detect_many,
    dtmf,
    g711_encode,
    keyed,
    silence,
    through_g711,
    white_noise,
)
from tests.polling import until
from voicebot.media.clock import MID_ANALYSE, MID_RECEIVE, MediaClock
from voicebot.media.dual_mode_keys import DualModeKeys
from voicebot.media.g711 import PCMA, PCMU, Codec
from voicebot.media.inband_dtmf import DBM0_PEAK, FRAME, KEYS, InbandDtmfDetector
from voicebot.media.inband_receiver import (
    FRAME_BYTES,
    MAX_BUFFERED_FRAMES,
    MID_ANALYSE_MAX_LOAD,
    InbandChannel,
    InbandDtmfReceiver,
)

CODECS = [PCMU, PCMA]


def heard(
    signal: np.ndarray, codec: Codec, rng: np.random.Generator, snr_db: float | None = None
) -> str:
    """Keys detected in `signal` as a phone would send it: noise added, G.711, any offset."""
    if snr_db is not None:
        toned = signal[np.abs(signal) > 0]
        power = float(np.mean(toned**2)) / 10 ** (snr_db / 10)
        signal = signal + white_noise(len(signal), power, rng)
    return detect(through_g711(signal, codec), offset=int(rng.integers(0, FRAME)))


def press(key: str, ms: float = 80, **tone: float) -> np.ndarray:
    return np.concatenate([silence(100), dtmf(key, ms, **tone), silence(100)])


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(request.node.name.encode()))


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_every_key_is_heard_once(codec: Codec, rng: np.random.Generator) -> None:
    for key in KEYS:
        assert heard(press(key), codec, rng) == key


@pytest.mark.parametrize("deviation", [0.015, -0.015])
@pytest.mark.parametrize("tone", ["dev_low", "dev_high"])
def test_frequency_off_by_1_5_percent_is_accepted(
    tone: str, deviation: float, rng: np.random.Generator
) -> None:
    for key in KEYS:
        assert heard(press(key, **{tone: deviation}), PCMU, rng) == key, key


def test_both_tones_off_by_1_5_percent_in_opposite_directions_are_accepted(
    rng: np.random.Generator,
) -> None:
    for key in KEYS:
        assert heard(press(key, dev_low=0.015, dev_high=-0.015), PCMU, rng) == key
        assert heard(press(key, dev_low=-0.015, dev_high=0.015), PCMU, rng) == key


@pytest.mark.parametrize("deviation", [0.035, -0.035])
@pytest.mark.parametrize("tone", ["dev_low", "dev_high"])
def test_frequency_off_by_3_5_percent_is_rejected(
    tone: str, deviation: float, rng: np.random.Generator
) -> None:
    for key in KEYS:
        assert heard(press(key, **{tone: deviation}), PCMU, rng) == "", key
        # A loud off-frequency tone in noise is no key either.
        assert heard(press(key, dbm0=-5, **{tone: deviation}), PCMU, rng, snr_db=15) == ""


@pytest.mark.parametrize(
    ("twist_db", "accepted"), [(-8, True), (4, True), (-10, False), (6, False)]
)
def test_twist_limits(twist_db: float, accepted: bool, rng: np.random.Generator) -> None:
    """Normal twist (high tone weaker) to 8 dB and reverse to 4 dB are keys; beyond is not."""
    for key in KEYS:
        expected = key if accepted else ""
        assert heard(press(key, dbm0=-10, twist_db=twist_db), PCMU, rng) == expected, key


@pytest.mark.parametrize(("ms", "accepted"), [(40, True), (20, False)])
def test_tone_duration(ms: float, accepted: bool, rng: np.random.Generator) -> None:
    """Q.24: a 40 ms tone is a key; one of 20 ms is not."""
    for key in KEYS:
        assert heard(press(key, ms=ms), PCMU, rng) == (key if accepted else ""), key


def test_40_ms_pause_separates_two_presses_of_one_key(rng: np.random.Generator) -> None:
    for key in KEYS:
        signal = keyed(key * 3, tone_ms=40, pause_ms=40)
        assert heard(signal, PCMU, rng) == key * 3, key


def test_10_ms_interruption_is_not_a_pause(rng: np.random.Generator) -> None:
    for key in KEYS:
        signal = np.concatenate(
            [silence(60), dtmf(key, 60), silence(10), dtmf(key, 60), silence(60)]
        )
        assert heard(signal, PCMU, rng) == key, key


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_minus_25_dbm0_per_tone_is_heard(codec: Codec, rng: np.random.Generator) -> None:
    for key in KEYS:
        assert heard(press(key, dbm0=-25), codec, rng) == key, key
        # ... with the weaker tone 8 dB lower still.
        assert heard(press(key, dbm0=-25, twist_db=-8), codec, rng) == key, key


def test_minus_40_dbm0_per_tone_is_not_a_key(rng: np.random.Generator) -> None:
    for key in KEYS:
        assert heard(press(key, dbm0=-40), PCMU, rng) == "", key


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: c.name)
def test_15_db_snr_white_noise_at_minus_25_dbm0(codec: Codec, rng: np.random.Generator) -> None:
    for key in KEYS:
        assert heard(press(key, dbm0=-25), codec, rng, snr_db=15) == key, key
        edges = keyed(key * 2, tone_ms=40, pause_ms=40, dbm0=-25, dev_low=0.015)
        assert heard(edges, codec, rng, snr_db=15) == key * 2, key


def test_noise_alone_is_no_key(rng: np.random.Generator) -> None:
    noise = white_noise(8000 * 60, (0.1 * 22700) ** 2, rng)
    assert detect(through_g711(noise, PCMU)) == ""


def test_many_calls_at_once_each_hear_their_own_keys(rng: np.random.Generator) -> None:
    """One analyse() per frame for 40 calls gives what each call alone would."""
    sequences = ["".join(rng.choice(list(KEYS), size=6)) for _ in range(40)]
    signals = [keyed(seq, tone_ms=50, pause_ms=50, dbm0=-20) for seq in sequences]
    total = max(map(len, signals)) + 3 * FRAME
    offsets = rng.integers(0, FRAME, size=len(signals))
    streams = np.stack(
        [np.pad(s, (o, total - o - len(s))) for s, o in zip(signals, offsets, strict=True)]
    )
    assert detect_many(streams) == sequences


def test_slots_are_reused_with_fresh_state() -> None:
    detector = InbandDtmfDetector(capacity=1)
    first = detector.open()
    half_key = dtmf("5", 20)[:FRAME]
    detector.analyse(half_key[None], [first])
    detector.close(first)
    second, third = detector.open(), detector.open()  # the second grows the arrays
    assert {second, third} == {0, 1}
    assert detector.open_slots == 2


async def test_receiver_delivers_keys_on_the_media_clock() -> None:
    """Audio fed in irregular pieces reaches each call's on_key once per press."""
    clock = MediaClock(interval=0.002)  # fast ticks: the test needs no real time
    receiver = InbandDtmfReceiver(clock)
    keys: dict[str, list[str]] = {"a": [], "b": []}
    channels = {name: receiver.open(keys[name].append) for name in keys}
    audio = {
        "a": through_g711(keyed("3#1", tone_ms=60, pause_ms=60), PCMU).tobytes(),
        "b": through_g711(keyed("90*", tone_ms=60, pause_ms=60), PCMA).tobytes(),
    }
    assert clock.running
    for offset in range(0, max(map(len, audio.values())), FRAME_BYTES):
        for name, pcm in audio.items():
            piece = pcm[offset : offset + FRAME_BYTES]
            channels[name].feed(piece[:100])  # odd splits: a frame is assembled
            channels[name].feed(piece[100:])
        await asyncio.sleep(0.004)
    await until(lambda: (keys["a"], keys["b"]) == (list("3#1"), list("90*")), 5, what=lambda: keys)
    for channel in channels.values():
        channel.close()
    assert receiver.open_channels == 0
    await clock.stop()


async def test_receiver_bounds_a_flood() -> None:
    clock = MediaClock(interval=10.0)  # never ticks during the test
    receiver = InbandDtmfReceiver(clock)
    channel = receiver.open(lambda key: None)
    for _ in range(1000):
        channel.feed(bytes(FRAME_BYTES))
    assert channel.dropped_bytes == (1000 - MAX_BUFFERED_FRAMES) * FRAME_BYTES
    channel.close()
    await clock.stop()


async def test_a_failing_key_handler_does_not_stop_other_calls() -> None:
    clock = MediaClock(interval=10.0)  # ticked by hand below
    receiver = InbandDtmfReceiver(clock)
    got: list[str] = []

    def broken(key: str) -> None:
        raise RuntimeError("boom")

    receiver.detector.open()  # a slot in use elsewhere: slots need not be contiguous
    channels = [receiver.open(broken), receiver.open(got.append)]
    pcm = through_g711(keyed("7", tone_ms=80, pause_ms=80), PCMU).tobytes()
    for offset in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        for channel in channels:
            channel.feed(pcm[offset : offset + FRAME_BYTES])
        receiver.on_tick(0)
    assert got == ["7"]
    await clock.stop()


async def test_g711_payloads_are_heard_as_their_decoded_audio() -> None:
    """Channels fed the packets' G.711 payloads (PCMU and PCMA, in bursts and odd
    pieces) hear what a channel fed the same audio as 16-bit PCM hears, frame for
    frame: the tick's one table lookup decodes as the codec does."""
    clock = MediaClock(interval=10.0)  # ticked by hand below
    receiver = InbandDtmfReceiver(clock)
    rng = np.random.default_rng(5)
    calls = [("1A#", PCMU), ("90*", PCMA), ("D47", PCMU), ("2B5", PCMA)]
    heard: list[list[str]] = [[] for _ in range(2 * len(calls))]
    g711 = [receiver.open(heard[i].append, codec) for i, (_, codec) in enumerate(calls)]
    pcm = [receiver.open(heard[len(calls) + i].append) for i in range(len(calls))]
    payloads = [g711_encode(keyed(keys, tone_ms=60, pause_ms=60), c) for keys, c in calls]
    offsets = [0] * len(calls)
    while any(o < len(p) for o, p in zip(offsets, payloads, strict=True)):
        for i, payload in enumerate(payloads):
            piece = payload[offsets[i] : offsets[i] + FRAME * int(rng.integers(1, 4)) - 7]
            offsets[i] += len(piece)
            g711[i].feed_g711(piece)
            pcm[i].feed(calls[i][1].decode(piece))
        receiver.on_tick(0)
    receiver.on_tick(0)
    assert ["".join(keys) for keys in heard] == [keys for keys, _ in calls] * 2
    with pytest.raises(TypeError):
        g711[0].feed(b"\x00\x00")
    with pytest.raises(TypeError):
        pcm[0].feed_g711(b"\x00")
    await clock.stop()


async def test_calls_in_both_laws_one_frame_a_tick_hear_what_pcm_hears() -> None:
    """The bot's usual tick: G.711 calls only, PCMU and PCMA mixed, each with
    exactly one frame waiting (decoded in bulk, no Python per call). They hear
    what channels of another receiver fed the same audio as 16-bit PCM hear."""
    clock = MediaClock(interval=10.0)  # ticked by hand below
    g711_receiver, pcm_receiver = InbandDtmfReceiver(clock), InbandDtmfReceiver(clock)
    calls = [("1A#", PCMU), ("90*", PCMA), ("D47", PCMA), ("2B5", PCMU), ("0", PCMA)]
    heard: list[list[str]] = [[] for _ in range(2 * len(calls))]
    g711 = [g711_receiver.open(heard[i].append, codec) for i, (_, codec) in enumerate(calls)]
    pcm = [pcm_receiver.open(heard[len(calls) + i].append) for i in range(len(calls))]
    payloads = [g711_encode(keyed(keys, tone_ms=60, pause_ms=60), c) for keys, c in calls]
    frames = max(len(p) for p in payloads) // FRAME + 1
    for n in range(frames):
        for i, payload in enumerate(payloads):
            piece = payload[n * FRAME : (n + 1) * FRAME]
            if len(piece) == FRAME:  # a call whose audio ended sends nothing more
                g711[i].feed_g711(piece)
                pcm[i].feed(calls[i][1].decode(piece))
        g711_receiver.on_tick(n)
        pcm_receiver.on_tick(n)
    assert ["".join(keys) for keys in heard] == [keys for keys, _ in calls] * 2
    assert g711_receiver.frames_analysed == pcm_receiver.frames_analysed
    await clock.stop()


class _MidTickProbe:
    """MID_RECEIVE: one frame to `channel` (as the mid-tick read hands it on);
    MID_ANALYSE, after the receiver's own: (frames fed, frames analysed) by then."""

    def __init__(self, receiver: InbandDtmfReceiver, channel: InbandChannel) -> None:
        self.receiver, self.channel = receiver, channel
        self.fed = 0
        self.seen: list[tuple[int, int]] = []

    def feed(self, tick_no: int) -> None:
        self.channel.feed_g711(b"\xff" * FRAME)
        self.fed += 1

    def on_tick(self, tick_no: int) -> None:
        self.seen.append((self.fed, self.receiver.frames_analysed))


class _Phase:
    def __init__(self, on_tick: Callable[[int], None]) -> None:
        self.on_tick = on_tick


class _Busy:
    """SEND: keeps the loop busy `seconds` every tick (other calls' sends)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_tick(self, tick_no: int) -> None:
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            pass


@pytest.mark.parametrize("busy", [False, True], ids=["room", "busy"])
async def test_the_mid_tick_analysis_waits_for_the_tick_when_the_clock_is_busy(
    busy: bool,
) -> None:
    """With room on the clock a frame read mid-tick is analysed at once; when
    the tick's own work took more than MID_ANALYSE_MAX_LOAD of it, that frame
    waits for the next tick's analysis (one detector call a tick, not two)."""
    interval = 0.1
    clock = MediaClock(interval=interval)
    receiver = InbandDtmfReceiver(clock)
    channel = receiver.open(lambda key: None, PCMU)
    probe = _MidTickProbe(receiver, channel)
    load = _Busy(interval * (MID_ANALYSE_MAX_LOAD + 0.2) if busy else 0.0)
    clock.subscribe(load)
    clock.subscribe(_Phase(probe.feed), MID_RECEIVE)
    clock.subscribe(probe, MID_ANALYSE)
    try:
        await until(lambda: len(probe.seen) >= 4, timeout=5)
    finally:
        await clock.stop()
        channel.close()
    # After the first mid-tick, each tick's analysis took the frame fed before it.
    lag = {fed - analysed for fed, analysed in probe.seen[1:]}
    assert lag == ({1} if busy else {0}), probe.seen
    assert (clock.load > MID_ANALYSE_MAX_LOAD) is busy


# -- dual mode: a phone sending each key as RFC 4733 and as tones ---------------


def test_dual_mode_press_is_one_digit_whichever_copy_comes_first() -> None:
    keys = DualModeKeys()
    assert keys.accept("rfc4733", "5", 0.00)
    assert not keys.accept("inband", "5", 0.05)
    assert keys.accept("inband", "6", 1.00)
    assert not keys.accept("rfc4733", "6", 1.02)
    assert keys.merged == 2


def test_dual_mode_fast_repeats_of_one_key_stay_distinct() -> None:
    """'11' with 40 ms tone and pause: two pairs, two digits."""
    keys = DualModeKeys()
    events = [("rfc4733", 0.00), ("inband", 0.04), ("rfc4733", 0.08), ("inband", 0.12)]
    assert [keys.accept(source, "1", t) for source, t in events] == [True, False, True, False]


def test_single_source_repeats_are_never_merged() -> None:
    keys = DualModeKeys()
    assert all(keys.accept("inband", "1", t / 10) for t in range(5))
    assert all(keys.accept("rfc4733", "2", 1 + t / 10) for t in range(5))
    # A copy that comes too late is a press of its own.
    assert keys.accept("inband", "2", 5.0)


def test_keys_over_speech_are_each_heard_once(tmp_path) -> None:
    """A phone that adds its tones to the microphone: `3#1500#1` (100 ms
    presses, 200 ms gaps, -10 dBm0 per tone) over speech at -20 dBm0, as
    bench/full_duplex.py's callers key it, 200 calls each at its own place in
    the speech. A syllable under a held key must neither split the press in two
    nor hide it: with a strict test only, one call in twenty came out wrong
    (`33#...`, `3#150#1`)."""
    import subprocess

    wav, raw = tmp_path / "speech.wav", tmp_path / "speech.raw"
    text = (
        "Hello, this is the sales department. We can deliver the order on Tuesday "
        "between nine and twelve. The price is one thousand five hundred, with the discount."
    )
    subprocess.run(["espeak-ng", "-v", "en", "-s", "150", "-w", str(wav), text],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    subprocess.run(["sox", str(wav), "-t", "raw", "-r", "8000", "-e", "signed", "-b", "16",
                    "-c", "1", str(raw)], check=True, capture_output=True, timeout=60)  # fmt: skip
    speech = np.fromfile(raw, dtype="<i2").astype(np.float64)
    speech *= 10 ** (-20 / 20) * DBM0_PEAK / np.sqrt(2) / np.sqrt(np.mean(speech**2))
    rng = np.random.default_rng(4)
    keys = "3#1500#1"
    tones = keyed(keys, tone_ms=100, pause_ms=200)
    starts = rng.integers(0, len(speech), 200)
    streams = np.stack(
        [speech[(start + np.arange(len(tones))) % len(speech)] + tones for start in starts]
    )
    heard = detect_many(through_g711(streams, PCMU))
    assert heard == [keys] * len(starts), [h for h in heard if h != keys]


def test_the_windows_left_unmeasured_are_none_the_full_measure_calls_a_key(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`_classify` measures offsets and twist only where a key is possible at
    all (the level and share a tone within MAX_DEVIATION can keep in its bin).
    Here every window is also measured in full, and the two must agree: tones at
    the deviation limit both ways, near the level floor, at both twist limits,
    in white noise, among noise alone."""
    from voicebot.media import inband_dtmf

    gated, measure = inband_dtmf._classify, inband_dtmf._pair
    windows_seen = measured = keys = 0

    def counted(power: np.ndarray, *rest: np.ndarray) -> tuple:
        nonlocal measured
        measured += len(power)
        return measure(power, *rest)

    def full(windows: np.ndarray, before: np.ndarray, energy: np.ndarray) -> np.ndarray:
        n = windows.shape[0] * windows.shape[1]
        flat_windows = windows.reshape(n, -1)
        power = flat_windows.real**2 + flat_windows.imag**2
        low, _ = inband_dtmf._strongest(power, 0)
        high, _ = inband_dtmf._strongest(power, 4)
        fraction, plausible, off = inband_dtmf._pair(
            power, flat_windows, before.reshape(n, -1), energy.reshape(n), low, high
        )
        ok = plausible & (
            (fraction >= inband_dtmf.MIN_TONE_FRACTION)
            | (
                (fraction >= inband_dtmf.UNDER_SPEECH_TONE_FRACTION)
                & (off <= inband_dtmf.UNDER_SPEECH_OFFSET_HZ)
            )
        )
        return np.where(ok, low * 4 + high - 4, -1).reshape(windows.shape[:2])

    def both(windows: np.ndarray, before: np.ndarray, energy: np.ndarray) -> tuple:
        nonlocal windows_seen, keys
        monkeypatch.setattr(inband_dtmf, "_pair", counted)
        labels, weights = gated(windows, before, energy)
        monkeypatch.setattr(inband_dtmf, "_pair", measure)
        np.testing.assert_array_equal(labels, full(windows, before, energy))
        windows_seen += labels.size
        keys += int(np.sum(labels >= 0))
        return labels, weights

    monkeypatch.setattr(inband_dtmf, "_classify", both)
    limit = inband_dtmf.MAX_DEVIATION * 0.96
    tones = [
        dtmf(key, 60, dbm0=dbm0, dev_low=dev, dev_high=sign * dev, twist_db=twist)
        for key in KEYS
        for dev in (-limit, 0.0, limit)
        for sign in (1, -1)
        for dbm0, twist in ((-10, 0.0), (-27, 0.0), (-12, -8.0), (-12, 4.0))
    ]
    signal = np.concatenate([np.concatenate([t, silence(60)]) for t in tones])
    noisy = signal + white_noise(len(signal), (10 ** (-45 / 20) * DBM0_PEAK) ** 2, rng)
    detect(through_g711(noisy, PCMU), offset=int(rng.integers(0, FRAME)))
    assert keys > len(tones)  # the full measure found keys, and the gate kept every one
    assert 0 < measured < windows_seen  # while the silences were left unmeasured
