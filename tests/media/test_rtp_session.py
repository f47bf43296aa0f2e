import asyncio
import itertools
import socket
from typing import Any

import pytest

from tests.media.conftest import HOST
from tests.polling import until
from tests.ports import free_udp_span, rtp_window
from voicebot.media.clock import MediaClock
from voicebot.media.g711 import PCMA, PCMU
from voicebot.media.rtp import RtpPacket
from voicebot.media.session import RtpPortPool, RtpPortsExhausted, RtpSession
from voicebot.media.telephone_event import DtmfSender, TelephoneEvent

DTMF_PT = 101


class Receiver(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, data: bytes, addr) -> None:
        self.datagrams.append((data, addr))


async def udp_peer() -> tuple[asyncio.DatagramTransport, Receiver, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Receiver, local_addr=(HOST, 0))
    return transport, protocol, transport.get_extra_info("sockname")[1]


async def keyed_session(
    pool: RtpPortPool, clock: MediaClock, peer_port: int, keys: list[str], **options: Any
) -> RtpSession:
    """A started PCMU session towards `peer_port` that puts the RFC 4733 keys
    (payload type DTMF_PT) it hears into `keys`."""
    session = RtpSession(
        await pool.allocate(),
        (HOST, peer_port),
        PCMU,
        clock,
        dtmf_payload_type=DTMF_PT,
        on_key=keys.append,
        **options,
    )
    await session.start()
    return session


def free_even_ports(*ports: int) -> set[int]:
    free = set()
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            free.add(port)
    return free


async def test_pool_allocates_even_ports_skips_busy_and_exhausts() -> None:
    low = free_udp_span(6)
    busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        busy.bind((HOST, low))
    except OSError:
        pytest.skip("port raced away")
    try:
        pool = RtpPortPool(HOST, low, low + 5)  # even ports low, low+2, low+4
        first = await pool.allocate()
        second = await pool.allocate()
        assert {first.port, second.port} == {low + 2, low + 4}
        with pytest.raises(RtpPortsExhausted, match="no free even RTP port"):
            await pool.allocate()
        first.close()
        assert first.port not in pool.in_use
        # asyncio closes the socket on a later loop iteration
        await until(lambda: first.port in free_even_ports(first.port))
        again = await pool.allocate()
        assert again.port == first.port
        again.close()
        second.close()
    finally:
        busy.close()


def test_pool_rejects_range_without_even_port() -> None:
    with pytest.raises(ValueError):
        RtpPortPool(HOST, 10001, 10001)


@pytest.mark.alone
async def test_sends_one_full_packet_per_tick(pool: RtpPortPool, clock: MediaClock) -> None:
    peer, receiver, peer_port = await udp_peer()
    session = RtpSession(await pool.allocate(), (HOST, peer_port), PCMU, clock)
    session.player.play([b"\x01" * 160] * 3)
    await session.start()
    await asyncio.sleep(1.0)
    await session.close()
    peer.close()
    packets = [RtpPacket.parse(data) for data, _ in receiver.datagrams]
    assert 25 <= len(packets) <= 75
    assert session.stats.packets_sent == len(packets)
    for prev, cur in itertools.pairwise(packets):
        assert cur.sequence == (prev.sequence + 1) % 65536
        assert cur.timestamp == (prev.timestamp + 160) % 2**32
    assert {len(p.payload) for p in packets} == {160}
    assert {p.payload_type for p in packets} == {0}
    assert {p.ssrc for p in packets} == {packets[0].ssrc}
    assert [p.payload for p in packets[:4]] == [b"\x01" * 160] * 3 + [b"\xff" * 160]
    assert [p.marker for p in packets[:4]] == [True, False, False, False]
    assert not any(p.marker for p in packets[1:])
    # the header packed inline is byte for byte what RtpPacket serialises
    assert all(bytes(RtpPacket.parse(data)) == data for data, _ in receiver.datagrams)


async def test_sequence_wrap_on_the_wire(pool: RtpPortPool, clock: MediaClock) -> None:
    peer, receiver, peer_port = await udp_peer()
    session = RtpSession(await pool.allocate(), (HOST, peer_port), PCMA, clock)
    session._seq = 65533  # start right before the wrap
    session._timestamp = 2**32 - 320  # and the timestamp's
    await session.start()
    await until(lambda: len(receiver.datagrams) >= 6)
    await session.close()
    peer.close()
    packets = [RtpPacket.parse(d) for d, _ in receiver.datagrams]
    assert [p.sequence for p in packets[:6]] == [65533, 65534, 65535, 0, 1, 2]
    start = packets[0].timestamp
    assert [(p.timestamp - start) % 2**32 for p in packets[:6]] == [0, 160, 320, 480, 640, 800]
    assert any(p.timestamp < start for p in packets[:6])  # it did wrap
    assert {len(d) for d, _ in receiver.datagrams} == {172}
    assert packets[0].payload == b"\xd5" * 160


@pytest.mark.alone
async def test_garbage_does_not_stop_dtmf(pool: RtpPortPool, clock: MediaClock) -> None:
    peer, _receiver, peer_port = await udp_peer()
    raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # asyncio will not send 0 bytes
    raw.bind((HOST, 0))
    keys: list[str] = []
    session = await keyed_session(pool, clock, peer_port, keys)
    target = (HOST, session.local_port)
    sender = DtmfSender(DTMF_PT, ssrc=77)
    too_short_event = bytes(RtpPacket(DTMF_PT, 1, 2, 3, payload=b"\x01"))
    garbage = [b"", b"\x80", b"\x00" * 12, b"\xff" * 40, too_short_event]
    seq, timestamp = 0, 1000
    for key in "1500#":
        for data in garbage:
            raw.sendto(data, target)
        for packet, _ in sender.packets(key, seq, timestamp):
            peer.sendto(bytes(packet), target)
            seq += 1
        timestamp += 1600
    # 65 datagrams at once: the media tick reads a few per tick, so wait for all of them.
    stats = session.stats
    await until(lambda: len(keys) == 5 and stats.packets_received + stats.malformed == 65)
    assert keys == list("1500#")
    assert session.stats.keys == 5
    assert session.stats.malformed == 5 * len(garbage)
    assert session.stats.packets_received == 5 * 8
    assert session.remote == (HOST, peer_port)  # garbage from elsewhere did not latch
    sent_before = session.stats.packets_sent
    await until(lambda: session.stats.packets_sent > sent_before + 2)  # still sending
    await session.close()
    peer.close()
    raw.close()


async def test_every_audio_packet_hands_on_what_the_full_parse_finds(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    # The receive path's shortcut for plain packets (no CSRC, extension or
    # padding) must agree with RtpPacket.parse; the rest take the full parse.
    # Another payload type is neither audio nor malformed: it is ignored.
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    payloads: list[bytes] = []
    session = RtpSession(
        await pool.allocate(), peer.getsockname(), PCMU, clock, dtmf_payload_type=DTMF_PT
    )
    session.on_payload = payloads.append
    await session.start()
    plain = bytes(RtpPacket(0, 1, 2, 3, True, b"\x7f" * 160))
    datagrams = [
        plain,
        bytes(RtpPacket(0, 2, 2, 3, False, b"\x7e" * 160, csrc=[9])),
        bytes(RtpPacket(0, 3, 2, 3, False, b"\x7d" * 160, extension=(0xBEDE, b"\x00" * 4))),
        bytes(RtpPacket(0, 4, 2, 3, False, b"\x7c" * 160, padding=4)),
        bytes(RtpPacket(0, 5, 2, 3)),  # no payload
        bytes(RtpPacket(8, 6, 2, 3, False, b"\x7b" * 160)),  # not the call's codec
        bytes(RtpPacket(DTMF_PT, 7, 2, 3, False, b"\x01\x0a\x00\xa0")),  # a key, not audio
        bytes([0x40]) + plain[1:],  # version 1
    ]
    for data in datagrams:
        peer.sendto(data, (HOST, session.local_port))
    stats = session.stats
    await until(lambda: stats.packets_received + stats.malformed == len(datagrams) - 1)
    await session.close()
    peer.close()
    assert payloads == [RtpPacket.parse(data).payload for data in datagrams[:5]]
    assert payloads[3] == b"\x7c" * 160  # the padding stripped
    assert (stats.keys, stats.malformed, stats.packets_received) == (1, 1, 6)


async def udp_peer_on(host: str) -> tuple[asyncio.DatagramTransport, Receiver, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(Receiver, local_addr=(host, 0))
    return transport, protocol, transport.get_extra_info("sockname")[1]


def audio(seq: int) -> bytes:
    return bytes(RtpPacket(0, seq, 160 * seq, 5, payload=b"\xff" * 160))


async def test_nat_source_on_a_trusted_ip_latches_after_four_in_sequence_packets(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    """Behind NAT the phone sends from another port of its IP: learned, like
    Asterisk's strictrtp, only after 4 consecutive in-sequence packets."""
    sdp_peer, sdp_receiver, sdp_port = await udp_peer()
    nat_peer, nat_receiver, nat_port = await udp_peer()
    heard: list[bytes] = []
    session = RtpSession(
        await pool.allocate(), (HOST, sdp_port), PCMU, clock, on_audio=heard.append
    )
    await session.start()
    await until(lambda: len(sdp_receiver.datagrams) >= 2)
    target = (HOST, session.local_port)
    for seq in (1, 2, 4, 5, 6):  # a gap restarts the count: 4, 5, 6 are only 3
        nat_peer.sendto(audio(seq), target)
    await until(lambda: session.stats.learning == 5)
    assert session.remote == (HOST, sdp_port) and heard == []
    nat_peer.sendto(audio(7), target)  # the 4th in a row
    await until(lambda: len(nat_receiver.datagrams) >= 3)
    assert session.remote == (HOST, nat_port)
    assert heard == [b"\x00\x00" * 160] and session.stats.relatched == 1
    await session.close()
    for transport in (sdp_peer, nat_peer):
        transport.close()


async def test_stranger_ip_never_latches_however_well_it_sends(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    """The attack: valid, in-sequence RTP and keys from 127.0.0.2 before the
    phone's first packet; the session stays on the SDP address and hears none of it."""
    phone, phone_receiver, phone_port = await udp_peer()
    stranger, stranger_receiver, _ = await udp_peer_on("127.0.0.2")
    keys: list[str] = []
    session = await keyed_session(pool, clock, phone_port, keys, learn_from=["127.0.0.1"])
    target = (HOST, session.local_port)
    sender = DtmfSender(DTMF_PT, ssrc=66)
    seq, timestamp = 0, 0
    for key in "9#0#1":
        for packet, _ in sender.packets(key, seq, timestamp):
            stranger.sendto(bytes(packet), target)
            seq += 1
        timestamp += 1600
    for n in range(10):
        stranger.sendto(audio(seq + n), target)
    await until(lambda: session.stats.refused == 5 * 8 + 10)
    assert keys == [] and session.remote == (HOST, phone_port)
    assert stranger_receiver.datagrams == []
    sender = DtmfSender(DTMF_PT, ssrc=77)
    for packet, _ in sender.packets("3", 100, 5000):
        phone.sendto(bytes(packet), target)
    await until(lambda: keys == ["3"])
    await until(lambda: len(phone_receiver.datagrams) >= 3)
    await session.close()
    phone.close()
    stranger.close()


async def test_a_live_stream_is_not_taken_over_from_its_own_ip(
    pool: RtpPortPool, clock: MediaClock
) -> None:
    phone, _phone_receiver, phone_port = await udp_peer()
    other, _other_receiver, _ = await udp_peer()
    session = RtpSession(await pool.allocate(), (HOST, phone_port), PCMU, clock)
    await session.start()
    target = (HOST, session.local_port)
    phone.sendto(audio(1), target)
    await until(lambda: session.stats.packets_received == 1)
    for seq in range(10, 20):
        other.sendto(audio(seq), target)
    await until(lambda: session.stats.refused == 10)
    assert session.remote == (HOST, phone_port)
    await session.close()
    phone.close()
    other.close()


async def test_pool_hands_out_ports_at_random() -> None:
    low, high = rtp_window(calls=36)
    pool = RtpPortPool(HOST, low, high)
    endpoints = [await pool.allocate() for _ in range(8)]
    ports = [e.port for e in endpoints]
    try:
        assert len(set(ports)) == 8 and all(p % 2 == 0 and low <= p <= high for p in ports)
        # in order they would be low, low+2, ...: the chance a random draw is that is ~1e-12
        assert ports != sorted(ports) or ports[-1] - ports[0] != 14
    finally:
        for endpoint in endpoints:
            endpoint.close()


async def test_send_keys_round_trip_between_sessions(pool: RtpPortPool, clock: MediaClock) -> None:
    a_endpoint, b_endpoint = await pool.allocate(), await pool.allocate()
    keys: list[str] = []
    a = RtpSession(a_endpoint, (HOST, b_endpoint.port), PCMU, clock, dtmf_payload_type=DTMF_PT)
    b = RtpSession(
        b_endpoint,
        (HOST, a_endpoint.port),
        PCMU,
        clock,
        dtmf_payload_type=DTMF_PT,
        on_key=keys.append,
    )
    await a.start()
    await b.start()
    with pytest.raises(ValueError):
        a.send_keys("12x")
    await asyncio.wait_for(a.send_keys("1500", duration=0.04, gap=0.04), 5)
    await until(lambda: len(keys) == 4)
    assert keys == list("1500")
    await a.close()
    await b.close()
    assert pool.in_use == frozenset()


async def test_close_is_idempotent_and_releases_port(pool: RtpPortPool, clock: MediaClock) -> None:
    session = RtpSession(await pool.allocate(), (HOST, 9), PCMU, clock)
    await session.start()
    await session.close()
    await session.close()
    assert pool.in_use == frozenset()


def test_event_payload_helper_sanity() -> None:
    assert len(bytes(TelephoneEvent(1))) == 4
