"""RTP fixed header (RFC 3550 §5.1), in the style of aiortc's ``rtp.py``.

Parsing never trusts the wire: anything that does not fit the RFC raises
`RtpParseError`, and the session counts and drops it. Stock pyVoIP crashed
its receive thread on a 0-byte datagram; here that is just another malformed
packet.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTP_VERSION = 2
RTP_HEADER_LENGTH = 12
SEQ_MODULO = 1 << 16
TIMESTAMP_MODULO = 1 << 32

#: The fixed header: V/P/X/CC, M/PT, sequence, timestamp, SSRC.
HEADER = struct.Struct("!BBHII")


class RtpParseError(ValueError):
    """The datagram is not a well-formed RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).

    A header extension (§5.3.1) is skipped on parse and kept verbatim in
    `extension` (profile and data) so `bytes(parse(x)) == x` for unpadded
    packets; padding is stripped on parse and `padding` records its length.
    """

    payload_type: int = 0
    sequence: int = 0
    timestamp: int = 0
    ssrc: int = 0
    marker: bool = False
    payload: bytes = b""
    csrc: list[int] = field(default_factory=list)
    extension: tuple[int, bytes] | None = None
    padding: int = 0
    version: int = RTP_VERSION

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < RTP_HEADER_LENGTH:
            raise RtpParseError(f"RTP packet length {len(data)} < {RTP_HEADER_LENGTH}")
        first, second, sequence, timestamp, ssrc = HEADER.unpack_from(data)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpParseError(f"RTP version {version} != 2")
        has_padding = bool(first & 0x20)
        has_extension = bool(first & 0x10)
        csrc_count = first & 0x0F

        end = len(data)
        padding = 0
        if has_padding:
            padding = data[-1]
            if padding == 0:
                raise RtpParseError("RTP padding length is zero")
            end -= padding

        pos = RTP_HEADER_LENGTH + 4 * csrc_count
        if pos > end:
            raise RtpParseError("RTP CSRC list overruns packet")
        csrc = list(struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_LENGTH))

        extension: tuple[int, bytes] | None = None
        if has_extension:
            if pos + 4 > end:
                raise RtpParseError("RTP header extension overruns packet")
            profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if pos + 4 * words > end:
                raise RtpParseError("RTP header extension overruns packet")
            extension = (profile, bytes(data[pos : pos + 4 * words]))
            pos += 4 * words

        if pos > end:
            raise RtpParseError("RTP padding overruns packet")
        return cls(
            payload_type=second & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            marker=bool(second & 0x80),
            payload=bytes(data[pos:end]),
            csrc=csrc,
            extension=extension,
            padding=padding,
            version=version,
        )

    def __bytes__(self) -> bytes:
        first = (self.version << 6) | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [
            HEADER.pack(
                first,
                second,
                self.sequence % SEQ_MODULO,
                self.timestamp % TIMESTAMP_MODULO,
                self.ssrc,
            )
        ]
        parts.extend(struct.pack("!I", c) for c in self.csrc)
        if self.extension is not None:
            profile, ext = self.extension
            if len(ext) % 4:
                raise ValueError("RTP header extension length must be a multiple of 4")
            parts.append(struct.pack("!HH", profile, len(ext) // 4))
            parts.append(ext)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def plain_packet(
    payload_type: int, marker: bool, sequence: int, timestamp: int, ssrc: int, payload: bytes
) -> bytes:
    """`bytes(RtpPacket(...))` for a packet with no CSRC, extension or padding:
    what an `RtpSession` sends every tick (it packs the same `HEADER` inline)."""
    second = (0x80 if marker else 0) | (payload_type & 0x7F)
    header = HEADER.pack(
        RTP_VERSION << 6, second, sequence % SEQ_MODULO, timestamp % TIMESTAMP_MODULO, ssrc
    )
    return header + payload


def seq_newer(a: int, b: int) -> bool:
    """True when 16-bit sequence number `a` comes after `b` (RFC 3550 §A.1 wraparound)."""
    diff = (a - b) % SEQ_MODULO
    return 0 < diff < SEQ_MODULO // 2


def timestamp_newer(a: int, b: int) -> bool:
    """True when 32-bit RTP timestamp `a` comes after `b`, across wraparound."""
    diff = (a - b) % TIMESTAMP_MODULO
    return 0 < diff < TIMESTAMP_MODULO // 2
