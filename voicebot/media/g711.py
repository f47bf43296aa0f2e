"""G.711 μ-law (PCMU) and A-law (PCMA) over 16-bit little-endian PCM.

Tables are computed once at import with the reference algorithm (the Sun
Microsystems g711.c that CPython's audioop also uses, so results match it
bit for bit): 65536 entries to encode, 256 to decode. Stock pyVoIP encoded
PCMA with the μ-law encoder; here each codec owns its own tables.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field

SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


_ULAW_ENDS = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_ENDS = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def ulaw_encode_sample(sample: int) -> int:
    """One signed 16-bit sample to μ-law (G.711 §3, 14-bit magnitude, bias 33)."""
    value = sample >> 2
    mask = 0xFF
    if value < 0:
        value, mask = -value, 0x7F
    value = min(value, 8159) + 0x21
    seg = _segment(value, _ULAW_ENDS)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def alaw_encode_sample(sample: int) -> int:
    """One signed 16-bit sample to A-law (G.711 §2, 13-bit, even bits inverted)."""
    value = sample >> 3
    mask = 0xD5
    if value < 0:
        value, mask = -value - 1, 0x55
    seg = _segment(value, _ALAW_ENDS)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (value >> (1 if seg < 2 else seg)) & 0x0F
    return ((seg << 4) | quant) ^ mask


def ulaw_decode_sample(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return 0x84 - t if code & 0x80 else t - 0x84


def alaw_decode_sample(code: int) -> int:
    code ^= 0x55
    t = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    t += 8 if seg == 0 else 0x108
    if seg > 1:
        t <<= seg - 1
    return t if code & 0x80 else -t


def _encode_table(encode_sample: Callable[[int], int]) -> tuple[int, ...]:
    # Indexed by the native unsigned 16-bit view of two little-endian bytes,
    # so encode() can index with memoryview.cast("H") on any host. A tuple:
    # indexing it in a list comprehension measured fastest of the pure-Python
    # ways (map over bytes.__getitem__, operator.itemgetter, array) on 3.11.
    return tuple(
        encode_sample(int.from_bytes(i.to_bytes(2, sys.byteorder), "little", signed=True))
        for i in range(65536)
    )


def _decode_tables(decode_sample: Callable[[int], int]) -> tuple[bytes, bytes]:
    # Low and high output bytes as two bytes.translate tables: decode runs in C.
    pcm = [decode_sample(code).to_bytes(2, "little", signed=True) for code in range(256)]
    return bytes(p[0] for p in pcm), bytes(p[1] for p in pcm)


@dataclass(frozen=True, slots=True)
class Codec:
    """A G.711 codec as negotiated in SDP (RFC 3551 §4.5.14, static payload types)."""

    name: str
    payload_type: int
    silence_byte: int
    _encode: tuple[int, ...] = field(repr=False, compare=False)
    _decode_low: bytes = field(repr=False, compare=False)
    _decode_high: bytes = field(repr=False, compare=False)
    clock_rate: int = 8000

    def encode(self, pcm16le: bytes) -> bytes:
        """16-bit little-endian PCM to G.711, one byte per sample (odd trailing byte dropped)."""
        view = memoryview(pcm16le)[: len(pcm16le) & ~1].cast("B").cast("H")
        table = self._encode
        return bytes([table[sample] for sample in view])

    def decode(self, data: bytes) -> bytes:
        """G.711 to 16-bit little-endian PCM."""
        out = bytearray(2 * len(data))
        out[0::2] = data.translate(self._decode_low)
        out[1::2] = data.translate(self._decode_high)
        return bytes(out)

    def silence(self, samples: int = SAMPLES_PER_FRAME) -> bytes:
        return bytes([self.silence_byte]) * samples


PCMU = Codec(
    "PCMU", 0, 0xFF, _encode_table(ulaw_encode_sample), *_decode_tables(ulaw_decode_sample)
)
PCMA = Codec(
    "PCMA", 8, 0xD5, _encode_table(alaw_encode_sample), *_decode_tables(alaw_decode_sample)
)

CODECS: dict[str, Codec] = {"PCMU": PCMU, "PCMA": PCMA}


def by_payload_type(payload_type: int) -> Codec:
    """The codec for a static payload type; KeyError when it is not G.711."""
    for codec in CODECS.values():
        if codec.payload_type == payload_type:
            return codec
    raise KeyError(f"no G.711 codec with payload type {payload_type}")
