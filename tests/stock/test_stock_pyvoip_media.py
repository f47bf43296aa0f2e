"""Characterisation: the RTP-side gaps of STOCK pyVoIP 1.6.8, next to voicebot's fix.

Each test drives the installed pyVoIP object (`pyVoIP.RTP.RTPClient`,
`RTPPacketManager`) with crafted bytes and asserts the stock failure exactly,
then feeds the same input to the voicebot replacement. If a pyVoIP release
fixes a gap, its stock assertion fails: re-evaluate what we replaced.

Already covered elsewhere, not repeated here: PCMA encoded as μ-law
(tests/media/test_g711.py) and the short packet at sequence wrap
(tests/media/test_rtp.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import pyVoIP.VoIP  # first: pyVoIP.SIP cannot be imported first (circular import)
from pyVoIP.RTP import PayloadType, RTPClient, TransmitType

import voicebot.media.clock as media_clock
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import PCMU
from voicebot.media.rtp import RtpPacket, RtpParseError
from voicebot.media.session import RtpPortPool, RtpSession
from voicebot.media.telephone_event import DtmfDetector, DtmfSender, TelephoneEvent

HOST = "127.0.0.1"
DTMF_PT = 101
ASSOC = {0: PayloadType.PCMU, DTMF_PT: PayloadType.EVENT}  # what VoIPCall builds from SDP
FLASH = 16  # RFC 4733 §3.2 event 16: hook flash
FRAME = 160  # samples (= bytes of G.711) per 20 ms


# -- helpers -----------------------------------------------------------------


def press(key: str, timestamp: int, seq: int = 0, ssrc: int = 77) -> list[RtpPacket]:
    """One RFC 4733 key press as a real sender emits it: marker packet, updates, 3 end packets."""
    return [p for p, _ in DtmfSender(DTMF_PT, ssrc).packets(key, seq, timestamp)]


def flash_packet(timestamp: int = 50_000, seq: int = 900) -> RtpPacket:
    return RtpPacket(DTMF_PT, seq, timestamp, 77, marker=True, payload=bytes(TelephoneEvent(FLASH)))


def audio_packet(n: int, first_timestamp: int = 1000) -> bytes:
    return bytes(RtpPacket(0, n % 65536, first_timestamp + n * FRAME, 5, payload=b"\xff" * FRAME))


def stock_client(dtmf=None, out_port: int = 9) -> RTPClient:
    """A stock RTPClient configured as VoIPCall.create_rtp_clients does (PCMU + 101)."""
    return RTPClient(ASSOC, HOST, 0, HOST, out_port, TransmitType.SENDRECV, dtmf=dtmf)


def stock_hears(packets: list[RtpPacket]) -> list[str]:
    """Feed packets through stock RTPClient.parse_packet (its receive path) and collect DTMF."""
    heard: list[str] = []
    client = stock_client(dtmf=heard.append)
    for packet in packets:
        client.parse_packet(bytes(packet))
    return heard


def voicebot_hears(packets: list[RtpPacket]) -> list[str]:
    detector = DtmfDetector()
    return [k for p in packets if (k := detector.feed(RtpPacket.parse(bytes(p)))) is not None]


@contextlib.contextmanager
def started_stock_client(dtmf=None) -> Iterator[tuple[RTPClient, dict[str, threading.Thread]]]:
    """Start a stock RTPClient on a free loopback port; always stop it and join its threads."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # its transmitter's target
    sink.bind((HOST, 0))
    before = set(threading.enumerate())
    client = stock_client(dtmf=dtmf, out_port=sink.getsockname()[1])
    client.start()  # binds HOST:0, starts "RTP Receiver" and "RTP Transmitter"
    threads = {t.name: t for t in threading.enumerate() if t not in before}
    try:
        yield client, threads
    finally:
        client.NSD = False  # let both loops exit before the socket closes (no send warnings)
        for thread in threads.values():
            thread.join(2)
        client.stop()
        sink.close()


@contextlib.contextmanager
def thread_exceptions() -> Iterator[list[threading.ExceptHookArgs]]:
    """Record exceptions that end threads (instead of pytest's unhandled-thread warning)."""
    seen: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = seen.append
    try:
        yield seen
    finally:
        threading.excepthook = previous


def wait_until(predicate, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# -- 1. DTMF keyed on the marker bit -----------------------------------------


def test_stock_loses_a_press_whose_marker_packet_was_lost() -> None:
    """RTPClient.parse_telephone_event reports a key only `if packet.marker`."""
    lost_marker = press("5", timestamp=8000)[1:]
    assert not any(p.marker for p in lost_marker)
    assert stock_hears(lost_marker) == []  # the key press vanished
    assert voicebot_hears(lost_marker) == ["5"]


def test_stock_doubles_a_press_whose_marker_packet_was_duplicated() -> None:
    packets = press("5", timestamp=8000)
    duplicated = [packets[0], packets[0], *packets[1:]]
    assert stock_hears(duplicated) == ["5", "5"]  # one press, two digits
    assert voicebot_hears(duplicated) == ["5"]


def test_stock_hears_a_clean_press_once() -> None:
    """Control: the stock failure above is loss/duplication, not a broken parser."""
    packets = press("7", timestamp=8000) + press("#", timestamp=9600, seq=8)
    assert stock_hears(packets) == ["7", "#"]
    assert voicebot_hears(packets) == ["7", "#"]


# -- 2./3. one bad datagram kills the stock receive thread ---------------------


def test_stock_parse_raises_on_flash_and_on_an_empty_datagram() -> None:
    """Neither exception is RTPParseError, the only parse error RTPClient.recv catches."""
    client = stock_client(dtmf=lambda key: None)
    with pytest.raises(IndexError):  # key[payload[0]] with a 16-entry key list
        client.parse_packet(bytes(flash_packet()))
    with pytest.raises(TypeError, match="ord"):  # byte_to_bits(b"") -> ord(b"")
        client.parse_packet(b"")
    # voicebot: the empty datagram is a counted parse error, flash is ignored.
    with pytest.raises(RtpParseError):
        RtpPacket.parse(b"")
    assert voicebot_hears([flash_packet(), *press("1", timestamp=60_000)]) == ["1"]


@pytest.mark.parametrize(
    ("poison", "error"),
    [(bytes(flash_packet()), IndexError), (b"", TypeError)],
    ids=["flash-event-16", "empty-datagram"],
)
def test_stock_receive_thread_dies_and_later_digits_are_never_heard(
    poison: bytes, error: type[Exception]
) -> None:
    heard: list[str] = []
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        with (
            thread_exceptions() as crashes,
            started_stock_client(heard.append) as (client, threads),
        ):
            receiver = threads["RTP Receiver"]
            target = client.sin.getsockname()
            sender.sendto(poison, target)
            assert wait_until(lambda: not receiver.is_alive()), "stock receiver survived"
            assert [type(c.exc_value) for c in crashes] == [error]
            assert crashes[0].thread is receiver
            for packet in press("1", timestamp=60_000):
                sender.sendto(bytes(packet), target)
            # The press arrives and sits in the socket: nobody reads it any more.
            assert select.select([client.sin], [], [], 2.0)[0] == [client.sin]
            assert heard == []
            assert threads["RTP Transmitter"].is_alive()  # the call looks alive
    finally:
        sender.close()


async def test_voicebot_session_survives_the_same_poison_and_hears_the_digit(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    """Session side of gaps 2/3 (see also tests/media/test_rtp_session.py::test_garbage_...)."""
    keys: list[str] = []
    session = RtpSession(
        await pool.allocate(), (HOST, 9), PCMU, clock, dtmf_payload_type=DTMF_PT, on_key=keys.append
    )
    await session.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # asyncio cannot send b""
    sender.bind((HOST, 0))
    session.remote = sender.getsockname()
    try:
        target = (HOST, session.local_port)
        sender.sendto(b"", target)
        sender.sendto(bytes(flash_packet()), target)
        for packet in press("1", timestamp=60_000):
            sender.sendto(bytes(packet), target)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2.0
        while not keys and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert keys == ["1"]
        assert session.stats.malformed == 1  # the empty datagram
    finally:
        await session.close()
        sender.close()


# -- 4. unbounded receive buffer ------------------------------------------------


def test_stock_receive_buffer_grows_linearly_and_is_never_freed() -> None:
    """RTPPacketManager keeps every payload twice (BytesIO + `log` dict), read or not.

    3000 packets = 60 s. Growth is exactly 160 bytes per packet in the
    buffer and the same again in `log`, so a 10-minute call (30000 frames)
    holds 4.8 MB + 4.8 MB; reading does not release any of it.
    """
    client = stock_client()
    pm = client.pmin
    sizes = []
    for n in range(3000):
        client.parse_packet(audio_packet(n))
        if n + 1 in (1000, 2000, 3000):
            sizes.append(pm.buffer.getbuffer().nbytes)
    assert sizes == [1000 * FRAME, 2000 * FRAME, 3000 * FRAME]  # linear, no cap
    assert len(pm.log) == 3000 and sum(map(len, pm.log.values())) == 3000 * FRAME
    while client.read(FRAME, blocking=False) != b"\x80" * FRAME:  # the app consumes it all
        pass
    assert pm.buffer.getbuffer().nbytes == 3000 * FRAME and len(pm.log) == 3000
    ten_minutes = 10 * 60 * 50
    assert (sizes[-1] + sum(map(len, pm.log.values()))) * ten_minutes // 3000 == 9_600_000


def test_stock_one_far_ahead_timestamp_allocates_the_whole_gap() -> None:
    """The write offset is the RTP timestamp: one stray packet 8e6 ahead costs 8 MB.

    (A timestamp 2^31 ahead, one packet, would ask BytesIO for 2 GiB.)
    """
    client = stock_client()
    client.parse_packet(audio_packet(0))
    client.parse_packet(bytes(RtpPacket(0, 1, 1000 + 8_000_000, 5, payload=b"\xff" * FRAME)))
    assert client.pmin.buffer.getbuffer().nbytes == 8_000_000 + FRAME


async def test_voicebot_session_keeps_nothing_it_receives(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    """Same 3000 packets (+ the far-ahead one) through RtpSession's datagram path."""
    session = RtpSession(await pool.allocate(), (HOST, 40000), PCMU, clock)
    await session.start()
    data = [audio_packet(n) for n in range(3000)]
    data.append(bytes(RtpPacket(0, 3000, 1000 + 8_000_000, 5, payload=b"\xff" * FRAME)))
    stock = stock_client()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for datagram in data:
            session.endpoint.protocol.datagram_received(datagram, (HOST, 40000))
        voicebot_growth = tracemalloc.get_traced_memory()[0] - base

        base = tracemalloc.get_traced_memory()[0]
        for datagram in data:
            stock.parse_packet(datagram)
        stock_growth = tracemalloc.get_traced_memory()[0] - base
    finally:
        if not was_tracing:
            tracemalloc.stop()
        await session.close()
    assert session.stats.packets_received == 3001 and session.stats.malformed == 0
    assert voicebot_growth < 64 * 1024
    assert stock_growth > 8_000_000 + 3000 * FRAME  # the 8 MB buffer + every payload in `log`


# -- 5. relative-sleep pacing ---------------------------------------------------


class VirtualTime:
    """A clock where every sleep wakes `overshoot` seconds late, as OS sleeps do."""

    def __init__(self, overshoot: float) -> None:
        self.now_ns = 0
        self.overshoot = overshoot

    def monotonic_ns(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        self.now_ns += round((seconds + self.overshoot) * 1e9)


OVERSHOOT = 0.0002  # 0.2 ms late per wake-up: what makes stock's measured 49.5 pkt/s
PACKETS = 1500  # 30 s of audio


def test_stock_transmitter_drifts_by_each_sleeps_lateness(monkeypatch) -> None:
    """RTPClient.trans runs its real code against a virtual clock (no threads, no waiting).

    It sleeps `20 ms - (now - last_sent)` and then re-reads the clock at the
    top of the next loop, so each wake-up's lateness is added to the period:
    the stream falls behind by `overshoot` every packet, for ever.
    """
    vt = VirtualTime(OVERSHOOT)
    monkeypatch.setattr(pyVoIP.RTP, "time", vt)
    client = stock_client()
    sent: list[int] = []

    def sendto(packet: bytes, address: tuple[str, int]) -> None:
        sent.append(vt.now_ns)
        if len(sent) == PACKETS:
            client.NSD = False

    client.sout = SimpleNamespace(sendto=sendto)
    client.trans()
    lag = [(t - sent[0]) / 1e9 - k * 0.020 for k, t in enumerate(sent)]
    rate = (PACKETS - 1) / ((sent[-1] - sent[0]) / 1e9)
    assert rate == pytest.approx(49.5, abs=0.01)
    assert lag[-1] == pytest.approx((PACKETS - 1) * OVERSHOOT, rel=1e-6)  # ~0.3 s behind


def test_voicebot_media_clock_does_not_drift_with_the_same_lateness(monkeypatch) -> None:
    """MediaClock._run on the same virtual clock: absolute deadlines, constant lag."""
    vt = VirtualTime(OVERSHOOT)

    async def sleep(seconds: float) -> None:
        vt.sleep(seconds)

    loop = SimpleNamespace(time=lambda: vt.now_ns / 1e9)
    monkeypatch.setattr(
        media_clock, "asyncio", SimpleNamespace(get_running_loop=lambda: loop, sleep=sleep)
    )
    clock = MediaClock(interval=0.020)
    ticks: list[int] = []

    class Tick:
        def on_tick(self, tick_no: int) -> None:
            ticks.append(vt.now_ns)
            if len(ticks) == PACKETS:
                clock.unsubscribe(self)

    clock._subscribers[Tick()] = None  # subscribe() would start a real task
    with pytest.raises(StopIteration):
        clock._run().send(None)  # the fake sleep never suspends: runs to completion
    lag = [t / 1e9 - (k + 1) * 0.020 for k, t in enumerate(ticks)]
    assert max(lag) == pytest.approx(OVERSHOOT) and min(lag) == pytest.approx(OVERSHOOT)
    assert (PACKETS - 1) / ((ticks[-1] - ticks[0]) / 1e9) == pytest.approx(50.0)


# -- 6. threads per call --------------------------------------------------------


def test_stock_rtp_client_start_costs_two_threads_per_stream() -> None:
    with started_stock_client() as (_client, threads):
        assert sorted(threads) == ["RTP Receiver", "RTP Transmitter"]  # + VoIPPhone's call Timer
    assert not any(t.is_alive() for t in threads.values())


async def test_voicebot_sessions_start_no_threads(pool: RtpPortPool, clock: MediaClock) -> None:
    before = set(threading.enumerate())
    sessions = [RtpSession(await pool.allocate(), (HOST, 9), PCMU, clock) for _ in range(10)]
    for session in sessions:
        await session.start()
    try:
        assert set(threading.enumerate()) - before == set()  # 10 calls, 0 threads: one task
    finally:
        for session in sessions:
            await session.close()
