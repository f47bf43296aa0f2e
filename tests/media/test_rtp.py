import struct

import pytest

from voicebot.media.rtp import (
    RtpPacket,
    RtpParseError,
    plain_packet,
    seq_newer,
)


def test_round_trip_plain() -> None:
    packet = RtpPacket(
        payload_type=0,
        sequence=65535,
        timestamp=2**32 - 1,
        ssrc=0xDEADBEEF,
        marker=True,
        payload=b"\xff" * 160,
    )
    data = bytes(packet)
    assert len(data) == 12 + 160
    assert RtpPacket.parse(data) == packet


def test_round_trip_csrc_extension_padding() -> None:
    packet = RtpPacket(
        payload_type=101,
        sequence=7,
        timestamp=8,
        ssrc=9,
        payload=b"abcd",
        csrc=[1, 2, 3],
        extension=(0xBEDE, b"\x10\x01\x00\x00"),
        padding=3,
    )
    parsed = RtpPacket.parse(bytes(packet))
    assert parsed == packet
    assert parsed.payload == b"abcd"


def test_extension_is_skipped() -> None:
    header = struct.pack("!BBHII", 0x90, 8, 1, 2, 3)
    extension = struct.pack("!HH", 0x1000, 2) + b"\x00" * 8
    parsed = RtpPacket.parse(header + extension + b"payload")
    assert parsed.payload == b"payload"
    assert parsed.payload_type == 8


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80" * 11,
        struct.pack("!BBHII", 0x40, 0, 1, 2, 3) + b"x",  # version 1
        struct.pack("!BBHII", 0x00, 0, 1, 2, 3),  # version 0
        struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"\x00\x00\x00\x20",  # padding overrun
        struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"\x00",  # zero padding length
        struct.pack("!BBHII", 0x83, 0, 1, 2, 3) + b"\x00" * 8,  # 3 CSRCs, room for 2
        struct.pack("!BBHII", 0x90, 0, 1, 2, 3) + b"\x00\x00",  # extension header cut
        struct.pack("!BBHII", 0x90, 0, 1, 2, 3) + struct.pack("!HH", 0, 4) + b"\x00" * 8,
    ],
)
def test_malformed_raises(data: bytes) -> None:
    with pytest.raises(RtpParseError):
        RtpPacket.parse(data)


def test_sequence_wrap_packet_is_full_size() -> None:
    # Stock pyVoIP sent a short packet when its sequence counter wrapped.
    sizes = {
        len(bytes(RtpPacket(0, sequence=seq, payload=b"\xff" * 160)))
        for seq in (65534, 65535, 0, 1)
    }
    assert sizes == {172}


def test_seq_newer_wraps() -> None:
    assert seq_newer(1, 0)
    assert seq_newer(0, 65535)
    assert seq_newer(10, 65530)
    assert not seq_newer(65535, 0)
    assert not seq_newer(5, 5)


@pytest.mark.parametrize(
    ("pt", "marker", "seq", "ts", "ssrc"),
    [(0, False, 0, 0, 0), (8, True, 65535, 2**32 - 1, 0xDEADBEEF), (0, True, 65536, 2**32, 1)],
)
def test_plain_packet_is_what_rtp_packet_serialises(
    pt: int, marker: bool, seq: int, ts: int, ssrc: int
) -> None:
    # The send path's shortcut must put the same bytes on the wire.
    packet = RtpPacket(pt, seq % 65536, ts % 2**32, ssrc, marker, b"\xd5" * 160)
    assert plain_packet(pt, marker, seq, ts, ssrc, b"\xd5" * 160) == bytes(packet)
