"""The media bridge: jitter buffer rules, G.711 conversion, and audio over loopback UDP."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import struct
from collections.abc import AsyncIterator

import pytest

from tests.media.conftest import HOST
from tests.media.test_rtp_session import udp_peer
from tests.polling import until
from voicebot.media.bridge import BridgeDirection, MediaBridge, transcode_table
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import PCMA, PCMU, Codec
from voicebot.media.rtp import RtpPacket
from voicebot.media.session import RtpPortPool, RtpSession
from voicebot.media.telephone_event import DtmfSender, TelephoneEvent

DTMF_PT = 101


def tone_frames(frequency: float, frames: int, codec: Codec) -> tuple[list[list[int]], list[bytes]]:
    """`frames` 20 ms frames of a tone whose amplitude ramps, so no two frames are alike:
    the linear samples and the encoded payloads."""
    linear: list[list[int]] = []
    for i in range(frames):
        peak = 3000 + 150 * i
        samples = [
            int(peak * math.sin(2 * math.pi * frequency * (i * 160 + n) / 8000)) for n in range(160)
        ]
        linear.append(samples)
    payloads = [codec.encode(struct.pack("<160h", *s)) for s in linear]
    return linear, payloads


def pcm(codec: Codec, payload: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(payload)}h", codec.decode(payload)))


def close_to(received: list[int], sent: list[int]) -> bool:
    """Within two G.711 quantisations (the far end's encoder, then our conversion)."""
    return all(abs(r - s) <= 0.13 * abs(s) + 48 for r, s in zip(received, sent, strict=True))


def packet(seq: int, payload: bytes) -> tuple[int, bytes]:
    return seq % 65536, payload


# -- conversion -----------------------------------------------------------------


def test_conversion_table_is_decode_then_encode_for_every_code() -> None:
    codes = bytes(range(256))
    assert codes.translate(transcode_table(PCMU, PCMA)) == PCMA.encode(PCMU.decode(codes))
    assert codes.translate(transcode_table(PCMA, PCMU)) == PCMU.encode(PCMA.decode(codes))
    assert PCMU.silence().translate(transcode_table(PCMU, PCMA)) == PCMA.silence()


def test_same_codec_passes_bytes_through() -> None:
    direction = BridgeDirection(PCMA, PCMA, depth=1)
    payload = bytes(range(160))
    direction.push(*packet(1, payload))
    assert direction.next_frame() == (payload, True)


# -- jitter buffer --------------------------------------------------------------


def frames_of(direction: BridgeDirection, ticks: int) -> list[bytes]:
    return [direction.next_frame()[0] for _ in range(ticks)]


def test_reordered_packets_play_in_sequence() -> None:
    direction = BridgeDirection(PCMU, PCMU, depth=2)
    payloads = [bytes([i]) * 160 for i in range(6)]
    for seq in (65534, 0, 65535, 2, 1, 3):  # across the wrap, shuffled
        direction.push(*packet(seq, payloads[(seq - 65534) % 65536]))
    assert frames_of(direction, 6) == payloads
    assert direction.stats.played == 6


def test_waits_for_depth_then_a_lost_packet_is_one_frame_of_silence() -> None:
    direction = BridgeDirection(PCMU, PCMA, depth=2)
    a, c = b"\x10" * 160, b"\x30" * 160
    direction.push(*packet(10, a))
    assert direction.next_frame() == (PCMA.silence(), False)  # still priming
    direction.push(*packet(12, c))  # 11 never comes
    frames = frames_of(direction, 3)
    convert = transcode_table(PCMU, PCMA)
    assert frames == [a.translate(convert), PCMA.silence(), c.translate(convert)]
    assert direction.stats.lost == 1


def test_a_packet_past_its_slot_is_dropped_not_played_late() -> None:
    direction = BridgeDirection(PCMU, PCMU, depth=1)
    direction.push(*packet(1, b"\x01" * 160))
    direction.push(*packet(3, b"\x03" * 160))
    frames_of(direction, 2)  # 1, then silence for 2
    direction.push(*packet(2, b"\x02" * 160))
    assert direction.stats.late == 1
    assert frames_of(direction, 1) == [b"\x03" * 160]


def test_empty_buffer_gives_silence_and_primes_again() -> None:
    direction = BridgeDirection(PCMU, PCMU, depth=2)
    for seq in (1, 2):
        direction.push(*packet(seq, bytes([seq]) * 160))
    assert frames_of(direction, 3) == [b"\x01" * 160, b"\x02" * 160, PCMU.silence()]
    direction.push(*packet(3, b"\x03" * 160))
    assert frames_of(direction, 1) == [PCMU.silence()]  # one packet < depth 2
    direction.push(*packet(4, b"\x04" * 160))
    assert frames_of(direction, 2) == [b"\x03" * 160, b"\x04" * 160]


def test_a_fast_sender_cannot_grow_the_delay_past_max_depth() -> None:
    direction = BridgeDirection(PCMU, PCMU, depth=2, max_depth=4)
    for seq in range(10):
        direction.push(*packet(seq, bytes([seq]) * 160))
    assert direction.stats.overflow > 0
    # Never more than max_depth queued: the oldest went, the newest stay.
    assert frames_of(direction, 4) == [bytes([seq]) * 160 for seq in (6, 7, 8, 9)]
    assert direction.next_frame() == (PCMU.silence(), False)


def test_a_sequence_jump_restarts_the_buffer() -> None:
    direction = BridgeDirection(PCMU, PCMU, depth=1)
    direction.push(*packet(100, b"\x01" * 160))
    frames_of(direction, 1)
    direction.push(*packet(30000, b"\x02" * 160))  # a new stream
    assert direction.stats.resyncs == 1
    assert frames_of(direction, 1) == [b"\x02" * 160]


def test_30_ms_packets_are_cut_into_20_ms_frames() -> None:
    direction = BridgeDirection(PCMU, PCMU, depth=1)
    stream = bytes(random.Random(4).randrange(256) for _ in range(240 * 4))
    for i in range(4):
        direction.push(*packet(i, stream[i * 240 : (i + 1) * 240]))
    assert b"".join(frames_of(direction, 6)) == stream


# -- over loopback UDP ------------------------------------------------------------


class Phone:
    """A UDP socket playing a phone: sends RTP from its own port, records what it gets."""

    def __init__(self, transport: asyncio.DatagramTransport, receiver: object, port: int) -> None:
        self.transport = transport
        self.receiver = receiver
        self.port = port
        self.seq = random.randrange(65536)
        self.ts = random.randrange(2**32)

    @classmethod
    async def open(cls) -> Phone:
        return cls(*await udp_peer())

    def send(self, to: int, payload: bytes, pt: int) -> None:
        data = bytes(RtpPacket(pt, sequence=self.seq, timestamp=self.ts, ssrc=99, payload=payload))
        self.seq = (self.seq + 1) % 65536
        self.ts = (self.ts + 160) % 2**32
        self.transport.sendto(data, (HOST, to))

    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(d) for d, _ in self.receiver.datagrams]  # type: ignore[attr-defined]

    def audio(self, pt: int, silence: bytes) -> list[bytes]:
        return [p.payload for p in self.packets() if p.payload_type == pt and p.payload != silence]


async def play(phone: Phone, to: int, payloads: list[bytes], pt: int) -> None:
    for payload in payloads:
        phone.send(to, payload, pt)
        await asyncio.sleep(0.020)


@contextlib.asynccontextmanager
async def bridged_pair(
    pool: RtpPortPool, clock: MediaClock, codec_a: Codec, codec_b: Codec, *, dtmf_b: bool = False
) -> AsyncIterator[tuple[Phone, Phone, RtpSession, RtpSession, MediaBridge]]:
    """Two phones, a session to each and the bridge between them; all stopped
    and closed on the way out (what the phones received stays readable)."""
    phone_a, phone_b = await Phone.open(), await Phone.open()
    a = RtpSession(
        await pool.allocate(), (HOST, phone_a.port), codec_a, clock, dtmf_payload_type=DTMF_PT
    )
    b = RtpSession(
        await pool.allocate(),
        (HOST, phone_b.port),
        codec_b,
        clock,
        dtmf_payload_type=DTMF_PT if dtmf_b else None,
    )
    await a.start()
    await b.start()
    bridge = MediaBridge(a, b)
    bridge.start()
    try:
        yield phone_a, phone_b, a, b, bridge
    finally:
        bridge.stop()
        await a.close()
        await b.close()
        phone_a.transport.close()
        phone_b.transport.close()


@pytest.mark.alone
async def test_audio_crosses_converted_both_ways(pool: RtpPortPool, clock: MediaClock) -> None:
    async with bridged_pair(pool, clock, PCMU, PCMA) as (phone_a, phone_b, a, b, bridge):
        linear_a, sent_a = tone_frames(1013, 40, PCMU)
        linear_b, sent_b = tone_frames(437, 40, PCMA)
        await asyncio.gather(
            play(phone_a, a.local_port, sent_a, 0), play(phone_b, b.local_port, sent_b, 8)
        )
        await until(
            lambda: len(phone_b.audio(8, PCMA.silence())) >= 40,
            what=lambda: f"{len(phone_b.audio(8, PCMA.silence()))} of 40 frames at b",
        )
        await until(
            lambda: len(phone_a.audio(0, PCMU.silence())) >= 40,
            what=lambda: f"{len(phone_a.audio(0, PCMU.silence()))} of 40 frames at a",
        )
    at_b = phone_b.audio(8, PCMA.silence())
    at_a = phone_a.audio(0, PCMU.silence())
    # Every frame arrived, in order, converted exactly as μ-law → linear → A-law ...
    assert at_b == [PCMA.encode(PCMU.decode(p)) for p in sent_a]
    assert at_a == [PCMU.encode(PCMA.decode(p)) for p in sent_b]
    # ... and is still the tone that was spoken, within G.711 quantisation.
    assert all(close_to(pcm(PCMA, r), s) for r, s in zip(at_b, linear_a, strict=True))
    assert all(close_to(pcm(PCMU, r), s) for r, s in zip(at_a, linear_b, strict=True))
    assert bridge.a_to_b.stats.lost == bridge.a_to_b.stats.late == 0


@pytest.mark.alone
async def test_keys_are_resent_as_events_never_as_audio(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    async with bridged_pair(pool, clock, PCMU, PCMA, dtmf_b=True) as (phone_a, phone_b, a, _, _):
        sender = DtmfSender(DTMF_PT, ssrc=99)
        for press, _ in sender.packets("5", phone_a.seq, phone_a.ts, 0.1):
            phone_a.transport.sendto(bytes(press), (HOST, a.local_port))
            await asyncio.sleep(0.020)
        await until(lambda: any(p.payload_type == DTMF_PT for p in phone_b.packets()))
        await until(lambda: phone_b.packets()[-1].payload_type != DTMF_PT)
    got = phone_b.packets()
    events = {TelephoneEvent.parse(p.payload).key for p in got if p.payload_type == DTMF_PT}
    assert events == {"5"}
    assert {p.payload_type for p in got} == {8, DTMF_PT}
    assert phone_b.audio(8, PCMA.silence()) == []  # nothing but silence as audio


@pytest.mark.alone
async def test_a_stranger_is_not_bridged(pool: RtpPortPool, clock: MediaClock) -> None:
    stranger = await Phone.open()
    try:
        async with bridged_pair(pool, clock, PCMU, PCMU) as (phone_a, phone_b, a, _, _):
            _, frames = tone_frames(1013, 10, PCMU)
            await play(phone_a, a.local_port, frames[:5], 0)  # the real phone is live
            await play(stranger, a.local_port, frames[5:], 0)
            await until(lambda: len(phone_b.audio(0, PCMU.silence())) >= 5)
            await until(lambda: a.stats.refused >= 5)
    finally:
        stranger.transport.close()
    assert phone_b.audio(0, PCMU.silence()) == frames[:5]
