"""In-band digits stay exact when the media tick is late and audio comes in bursts.

Under load neither side is punctual: a phone (or the network) late by 60 ms
delivers three frames at once, and a media tick that starts late finds
several frames per call. The detector counts contiguous 5 ms windows, so a
frame dropped in a tone is a hole that splits one press into two or hides it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import numpy as np

from tests.media.conftest import HOST
from tests.media.dtmf_signals import g711_encode, keyed, through_g711, white_noise
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import PCMU
from voicebot.media.inband_dtmf import FRAME
from voicebot.media.inband_receiver import FRAME_BYTES, InbandChannel, InbandDtmfReceiver
from voicebot.media.rtp import plain_packet
from voicebot.media.session import RtpPortPool, RtpSession

KEYS = "3#1500#1"  # what the bench keys: 100 ms presses, 200 ms gaps


def phone_audio(rng: np.random.Generator, seconds_of_lead_in: float = 0.1) -> np.ndarray:
    """The keys over a noise floor (-45 dBm0), as a quiet line carries them."""
    tones = keyed(KEYS, tone_ms=100, pause_ms=200)
    lead = np.zeros(round(seconds_of_lead_in * 8000))
    signal = np.concatenate([lead, tones])
    signal += white_noise(len(signal), (22700 * 10 ** (-45 / 20)) ** 2 / 2, rng)
    return signal[: len(signal) - len(signal) % FRAME]


async def test_late_ticks_and_bursts_lose_no_digit() -> None:
    """40 calls; frames arrive 1-7 at a time and the tick runs only now and then
    (up to 300 ms late): every call hears exactly its keys, none dropped."""
    rng = np.random.default_rng(10)
    clock = MediaClock(interval=10.0)  # never ticks by itself: ticked by hand below
    receiver = InbandDtmfReceiver(clock)
    calls = 40
    heard: list[list[str]] = [[] for _ in range(calls)]
    channels = [receiver.open(heard[i].append) for i in range(calls)]
    audio = [
        through_g711(phone_audio(rng, float(rng.uniform(0.02, 0.3))), PCMU).tobytes()
        for _ in range(calls)
    ]
    sent = [0] * calls  # bytes fed per call
    while any(sent[i] < len(audio[i]) for i in range(calls)):
        for i in range(calls):
            burst = int(rng.integers(1, 8)) * FRAME_BYTES  # a late phone's catch-up
            channels[i].feed(audio[i][sent[i] : sent[i] + burst])
            sent[i] += burst
        if rng.random() < 0.5:  # the tick comes late: one tick for several bursts
            receiver.on_tick(0)
    receiver.on_tick(0)
    assert ["".join(keys) for keys in heard] == [KEYS] * calls
    assert all(channel.dropped_bytes == 0 for channel in channels)
    assert receiver.frames_analysed == sum(len(pcm) for pcm in audio) // FRAME_BYTES
    await clock.stop()


async def test_a_stalled_event_loop_loses_no_inband_digit(pool: RtpPortPool) -> None:
    """Real RTP over loopback into RtpSessions on the real media clock, while the
    event loop stalls for 150 ms every 180-350 ms (as a loaded bot's does): the
    datagrams wait in the kernel, arrive 8 at a time, and every key is heard
    exactly once."""
    rng = np.random.default_rng(11)
    clock = MediaClock()
    receiver = InbandDtmfReceiver(clock)
    loop = asyncio.get_running_loop()
    calls = 8
    heard: list[list[str]] = [[] for _ in range(calls)]
    phones = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(calls)]
    sessions: list[RtpSession] = []
    channels: list[InbandChannel] = []
    stop = threading.Event()
    try:
        for i, phone in enumerate(phones):
            phone.bind((HOST, 0))
            session = RtpSession(await pool.allocate(), phone.getsockname(), PCMU, clock)
            channels.append(receiver.open(heard[i].append))
            session.on_audio = channels[-1].feed
            await session.start()
            sessions.append(session)
        payloads = [g711_encode(phone_audio(rng), PCMU) for _ in range(calls)]
        targets = [(HOST, session.local_port) for session in sessions]
        # Every session takes media from its phone's address: send from there.
        sender = threading.Thread(
            target=_send_from_phones, args=(phones, payloads, targets, stop), daemon=True
        )
        sender.start()
        while sender.is_alive():
            time.sleep(0.150)  # the stall: the loop does nothing while audio arrives
            await asyncio.sleep(float(rng.uniform(0.03, 0.2)))  # stalls land in tones too
        deadline = loop.time() + 5
        while ["".join(k) for k in heard] != [KEYS] * calls:
            assert loop.time() < deadline, heard
            await asyncio.sleep(0.02)
        assert [channel.dropped_bytes for channel in channels] == [0] * calls
        assert clock.skipped_ticks > 0, "the loop never stalled: the test proved nothing"
    finally:
        stop.set()
        for session in sessions:
            await session.close()
        for phone in phones:
            phone.close()
        await clock.stop()


def _send_from_phones(
    phones: list[socket.socket],
    payloads: list[bytes],
    targets: list[tuple[str, int]],
    stop: threading.Event,
) -> None:
    frames = min(len(p) // FRAME for p in payloads)
    t0 = time.monotonic()
    for n in range(frames):
        if stop.is_set():
            return
        for i, (phone, target) in enumerate(zip(phones, targets, strict=True)):
            chunk = payloads[i][n * FRAME : (n + 1) * FRAME]
            phone.sendto(plain_packet(0, n == 0, n, n * FRAME, 1000 + i, chunk), target)
        time.sleep(max(0.0, t0 + (n + 1) * 0.020 - time.monotonic()))
