"""RTP is read on the media tick, a bounded number of datagrams per socket per tick.

A phone (or a stranger who guessed the port) flooding one call's socket gets
at most `MAX_PACKETS_PER_TICK` datagrams read per tick; the rest wait in the
kernel, which drops what its buffer cannot hold. Every other call keeps its
cadence (one packet sent per tick) and hears everything its phone sent.
Counts are asserted, never times.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from tests.media.conftest import HOST
from tests.media.dtmf_signals import g711_encode, keyed
from tests.media.test_media_clock import until
from voicebot.media.clock import ANALYSE, MediaClock
from voicebot.media.g711 import PCMU
from voicebot.media.inband_dtmf import FRAME
from voicebot.media.inband_receiver import InbandDtmfReceiver
from voicebot.media.receiver import MAX_PACKETS_PER_TICK, receiver_for
from voicebot.media.rtp import plain_packet
from voicebot.media.session import RtpPortPool, RtpSession

FLOOD = 10_000
QUIET_PACKETS = 20


def audio(seq: int, ssrc: int) -> bytes:
    return plain_packet(0, False, seq, 160 * seq, ssrc, b"\xff" * 160)


class Counts:
    """After every tick's receive phase: the flooded call's received count, every call's sent."""

    def __init__(self, sessions: list[RtpSession]) -> None:
        self.sessions = sessions
        self.received: list[int] = []
        self.sent: list[list[int]] = []

    def on_tick(self, tick_no: int) -> None:
        self.received.append(self.sessions[0].stats.packets_received)
        self.sent.append([s.stats.packets_sent for s in self.sessions])


def flood(phone: socket.socket, target: tuple[str, int]) -> None:
    for seq in range(FLOOD):  # a blocking socket: what the far buffer cannot hold is dropped
        phone.sendto(audio(seq % 65536, 1), target)


async def test_a_flooded_socket_is_read_a_few_datagrams_per_tick(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    phones = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    sessions: list[RtpSession] = []
    counts = Counts(sessions)
    try:
        for phone in phones:
            phone.bind((HOST, 0))
            session = RtpSession(await pool.allocate(), phone.getsockname(), PCMU, clock)
            await session.start()
            sessions.append(session)
        clock.subscribe(counts, ANALYSE)
        receiver = receiver_for(clock)
        capped_before = receiver.capped_ticks
        await asyncio.to_thread(flood, phones[0], (HOST, sessions[0].local_port))
        for i, (phone, session) in enumerate(zip(phones[1:], sessions[1:], strict=True)):
            for seq in range(QUIET_PACKETS):
                phone.sendto(audio(seq, 100 + i), (HOST, session.local_port))
        await until(
            lambda: (
                all(s.stats.packets_received == QUIET_PACKETS for s in sessions[1:])
                and receiver.capped_ticks > capped_before + 3
            ),
            timeout=10,
        )
        ticks = len(counts.received)
    finally:
        clock.unsubscribe(counts)
        for session in sessions:
            await session.close()
        for phone in phones:
            phone.close()
    assert ticks >= 4
    taken = [b - a for a, b in zip(counts.received, counts.received[1:], strict=False)]
    assert max(taken) == MAX_PACKETS_PER_TICK  # bounded, and the bound was reached
    assert counts.received[-1] < FLOOD
    # Every call sent exactly one packet in every tick, the flooded one too.
    for before, after in zip(counts.sent, counts.sent[1:], strict=False):
        assert [b - a for a, b in zip(before, after, strict=True)] == [1] * len(sessions)
    assert [s.stats.packets_received for s in sessions[1:]] == [QUIET_PACKETS] * 3
    assert sessions[0].stats.refused == sessions[0].stats.malformed == 0


async def test_datagrams_queued_before_the_session_starts_are_not_taken(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    """A plain start (an outbound call's, after it rang): what queued while it
    rang (early media) is stale and not taken."""
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((HOST, 0))
    session = RtpSession(await pool.allocate(), phone.getsockname(), PCMU, clock)
    try:
        for seq in range(5):
            phone.sendto(audio(seq, 9), (HOST, session.local_port))
        await session.start()
        phone.sendto(audio(5, 9), (HOST, session.local_port))
        await until(lambda: session.stats.packets_received >= 1)
        sent = session.stats.packets_sent
        await until(lambda: session.stats.packets_sent >= sent + 3)  # a few more ticks
        assert session.stats.packets_received == 1
    finally:
        await session.close()
        phone.close()
    assert receiver_for(clock).sockets == 0  # closing the call took its socket out


async def test_an_answered_call_takes_what_came_after_the_answer_in_order(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    """An answered call (`voicebot.call`): what reached the port before the
    answer named it is dropped (`discard_queued`); what came after, before the
    media started (the phone's audio ahead of its ACK), is read, in order."""
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((HOST, 0))
    session = RtpSession(await pool.allocate(), phone.getsockname(), PCMU, clock)
    heard: list[int] = []
    session.on_packet = lambda seq, payload: heard.append(seq)
    try:
        # Loopback delivers before sendto returns (as the test above relies on).
        for seq in range(3):  # before the answer: a stranger's guess
            phone.sendto(audio(seq, 9), (HOST, session.local_port))
        assert session.endpoint.discard_queued() == 3
        for seq in range(10, 20):  # after it, ahead of the ACK
            phone.sendto(audio(seq, 9), (HOST, session.local_port))
        await session.start(keep_queued=True)
        phone.sendto(audio(20, 9), (HOST, session.local_port))
        await until(lambda: session.stats.packets_received >= 11)
    finally:
        await session.close()
        phone.close()
    assert heard == list(range(10, 21))


class KeyAfterReceive:
    """Sends one datagram to the call in tick `at`'s ANALYSE phase (after that
    tick's receive), and notes at every later tick's SEND phase what the call
    had received by then."""

    def __init__(self, phone: socket.socket, session: RtpSession, at: int) -> None:
        self.phone, self.session, self.at = phone, session, at
        self.sent_on: int | None = None
        self.received_at_send: dict[int, int] = {}

    def on_tick(self, tick_no: int) -> None:
        if self.sent_on is None and tick_no >= self.at:
            self.phone.sendto(audio(1, 7), (HOST, self.session.local_port))
            self.sent_on = tick_no

    def send_phase(self, tick_no: int) -> None:
        if self.sent_on is not None:
            self.received_at_send[tick_no] = self.session.stats.packets_received


class _SendPhase:
    """Calls a probe's `send_phase` in the clock's SEND phase."""

    def __init__(self, probe: KeyAfterReceive | ToneAfterAnalysis) -> None:
        self.probe = probe

    def on_tick(self, tick_no: int) -> None:
        self.probe.send_phase(tick_no)


@contextlib.asynccontextmanager
async def probing(
    clock: MediaClock, probe: KeyAfterReceive | ToneAfterAnalysis
) -> AsyncIterator[None]:
    """`probe` sends in each tick's ANALYSE phase and notes in its SEND phase."""
    send_phase = _SendPhase(probe)
    clock.subscribe(probe, ANALYSE)
    clock.subscribe(send_phase)  # SEND
    try:
        yield
    finally:
        clock.unsubscribe(probe)
        clock.unsubscribe(send_phase)


async def test_a_datagram_after_the_ticks_receive_is_read_before_the_next_tick(
    pool: RtpPortPool,
) -> None:
    """Read half-way between ticks too: an RFC 4733 key that lands just after a
    tick's receive waits half a tick in the kernel, not a whole one (it was
    read in the next tick's receive, after that tick's sends)."""
    clock = MediaClock(interval=0.1)  # 50 ms from the mid-tick read to the next tick
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((HOST, 0))
    session = RtpSession(await pool.allocate(), phone.getsockname(), PCMU, clock)
    probe = KeyAfterReceive(phone, session, at=3)
    try:
        await session.start()
        async with probing(clock, probe):
            await until(lambda: len(probe.received_at_send) >= 1, timeout=5)
        assert probe.sent_on is not None
        assert probe.received_at_send[probe.sent_on + 1] == 1
    finally:
        await session.close()
        await clock.stop()
        phone.close()


class ToneAfterAnalysis:
    """In tick `at`'s ANALYSE phase (after that tick's read and analysis), sends
    the call a key: 20 ms of silence then 60 ms of tone, four datagrams at once;
    notes at every later tick's SEND phase the keys heard by then."""

    def __init__(self, phone: socket.socket, port: int, heard: list[str], at: int) -> None:
        self.phone, self.port, self.heard, self.at = phone, port, heard, at
        frames = g711_encode(keyed("5", tone_ms=60, pause_ms=20)[: 4 * FRAME], PCMU)
        self.packets = [
            plain_packet(0, False, seq, FRAME * seq, 5, frames[seq * FRAME : (seq + 1) * FRAME])
            for seq in range(4)
        ]
        self.sent_on: int | None = None
        self.heard_at_send: dict[int, str] = {}

    def on_tick(self, tick_no: int) -> None:
        if self.sent_on is None and tick_no >= self.at:
            for packet in self.packets:
                self.phone.sendto(packet, (HOST, self.port))
            self.sent_on = tick_no

    def send_phase(self, tick_no: int) -> None:
        if self.sent_on is not None:
            self.heard_at_send[tick_no] = "".join(self.heard)


async def test_a_tone_completed_after_the_ticks_analysis_is_heard_before_the_next_tick(
    pool: RtpPortPool,
) -> None:
    """The in-band detector runs half-way between ticks too, after the mid-tick
    read: a frame that completes a tone is analysed then, not in the next
    tick's analysis (after that tick's sends), up to 10 ms sooner per key."""
    clock = MediaClock(interval=0.1)  # 50 ms from the mid-tick to the next tick
    inband = InbandDtmfReceiver(clock)
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind((HOST, 0))
    session = RtpSession(await pool.allocate(), phone.getsockname(), PCMU, clock)
    heard: list[str] = []
    channel = inband.open(heard.append, PCMU)
    session.on_payload = channel.feed_g711
    probe = ToneAfterAnalysis(phone, session.local_port, heard, at=3)
    try:
        await session.start()
        async with probing(clock, probe):
            await until(lambda: len(probe.heard_at_send) >= 2, timeout=5)
        assert probe.sent_on is not None
        assert probe.heard_at_send[probe.sent_on + 1] == "5"
        assert probe.heard_at_send[probe.sent_on + 2] == "5"  # once
    finally:
        channel.close()
        await session.close()
        await clock.stop()
        phone.close()
