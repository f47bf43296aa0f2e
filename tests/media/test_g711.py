import array
import math
import sys
import warnings

import pytest

from voicebot.media.g711 import CODECS, PCMA, PCMU, by_payload_type

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

# audioop works in native byte order; the codecs take little-endian (as WAV files hold).
ALL_SAMPLES = array.array("h", range(-32768, 32768)).tobytes()
ALL_CODES = bytes(range(256))

pytestmark = pytest.mark.skipif(sys.byteorder != "little", reason="audioop uses native order")


def test_encode_matches_audioop_for_every_sample() -> None:
    assert PCMU.encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert PCMA.encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)


def test_decode_matches_audioop_for_every_code() -> None:
    assert PCMU.decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert PCMA.decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_decode_encode_is_close(codec) -> None:
    tone = array.array("h", (int(12000 * math.sin(i / 5)) for i in range(160))).tobytes()
    encoded = codec.encode(tone)
    assert len(encoded) == 160
    back = array.array("h", codec.decode(encoded))
    for original, decoded in zip(array.array("h", tone), back, strict=True):
        assert abs(original - decoded) <= max(16, abs(original) // 16)
    assert codec.encode(codec.decode(encoded)) == encoded


def test_pcma_is_not_encoded_with_ulaw() -> None:
    # Stock pyVoIP encoded PCMA with the μ-law encoder.
    assert PCMA.encode(ALL_SAMPLES) != PCMU.encode(ALL_SAMPLES)
    assert PCMA.encode(b"\x00\x00") == b"\xd5"
    assert PCMU.encode(b"\x00\x00") == b"\xff"


def test_silence_frames() -> None:
    assert PCMU.silence() == b"\xff" * 160
    assert PCMA.silence() == b"\xd5" * 160
    assert PCMU.decode(PCMU.silence(2)) == b"\x00" * 4


def test_lookup() -> None:
    assert CODECS == {"PCMU": PCMU, "PCMA": PCMA}
    assert (PCMU.payload_type, PCMA.payload_type) == (0, 8)
    assert PCMU.clock_rate == PCMA.clock_rate == 8000
    assert by_payload_type(8) is PCMA
    with pytest.raises(KeyError):
        by_payload_type(18)


def test_odd_byte_dropped() -> None:
    assert PCMU.encode(b"\x00\x00\x01") == b"\xff"
