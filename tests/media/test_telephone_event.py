import pytest

from voicebot.media.rtp import RtpPacket, RtpParseError
from voicebot.media.telephone_event import (
    EVENT_KEYS,
    DtmfDetector,
    DtmfSender,
    KeySource,
    TelephoneEvent,
)

PT = 101


def event_packet(
    key: str | int,
    timestamp: int,
    seq: int = 0,
    *,
    end: bool = False,
    marker: bool = False,
    duration: int = 160,
    ssrc: int = 1234,
) -> RtpPacket:
    code = EVENT_KEYS.index(key) if isinstance(key, str) else key
    payload = bytes(TelephoneEvent(code, end=end, volume=10, duration=duration))
    return RtpPacket(PT, seq, timestamp, ssrc, marker, payload)


def press(key: str, timestamp: int, seq: int = 0) -> list[RtpPacket]:
    """A typical 100 ms press: marker packet, 4 updates, end packet 3 times."""
    packets = [event_packet(key, timestamp, seq, marker=True)]
    packets += [event_packet(key, timestamp, seq + i, duration=160 * (i + 1)) for i in range(1, 5)]
    packets += [event_packet(key, timestamp, seq + 5 + i, end=True, duration=800) for i in range(3)]
    return packets


def detect(packets: list[RtpPacket], detector: DtmfDetector | None = None) -> str:
    detector = detector or DtmfDetector()
    return "".join(k for p in packets if (k := detector.feed(p)) is not None)


def test_event_round_trip() -> None:
    event = TelephoneEvent(event=11, end=True, volume=10, duration=1234)
    data = bytes(event)
    assert data == b"\x0b\x8a\x04\xd2"
    assert TelephoneEvent.parse(data) == event
    assert event.key == "#"
    assert TelephoneEvent(16).key is None


def test_event_too_short() -> None:
    with pytest.raises(RtpParseError):
        TelephoneEvent.parse(b"\x01\x80")


def test_normal_press_reported_once_on_first_packet() -> None:
    detector = DtmfDetector()
    packets = press("5", 1000)
    assert detector.feed(packets[0]) == "5"
    assert detect(packets[1:], detector) == ""


def test_lost_marker_packet_still_reported() -> None:
    assert detect(press("7", 1000)[1:]) == "7"


def test_only_end_packets_still_reported() -> None:
    assert detect(press("7", 1000)[-3:]) == "7"


def test_duplicated_marker_packet_counts_once() -> None:
    packets = press("3", 1000)
    assert detect([packets[0], packets[0], *packets, packets[0]]) == "3"


def test_triple_end_packets_count_once() -> None:
    packets = press("9", 1000)
    assert detect(packets + packets[-3:]) == "9"


def test_reordering_within_and_across_presses() -> None:
    first, second = press("1", 1000), press("2", 3000, seq=20)
    shuffled = [first[2], first[0], first[1], *first[3:6], second[1], first[7], first[6], second[0]]
    shuffled += second[2:]
    assert detect(shuffled) == "12"


def test_same_digit_twice_with_new_timestamps() -> None:
    packets: list[RtpPacket] = []
    for i, key in enumerate("1500"):
        packets += press(key, 1000 + 2400 * i, seq=10 * i)
    assert detect(packets) == "1500"


def test_unknown_event_ignored_without_harm() -> None:
    flash = [event_packet(16, 5000, marker=True), event_packet(16, 5000, end=True)]
    packets = press("4", 1000) + flash + press("4", 9000, seq=20) + press("#", 12000, seq=30)
    assert detect(packets) == "4" + "4#"


def test_timestamp_wrap() -> None:
    packets = press("8", 2**32 - 160) + press("8", 1200, seq=10) + press("*", 4000, seq=20)
    assert detect(packets) == "88*"


def test_late_duplicate_after_other_presses() -> None:
    packets = press("1", 1000) + press("2", 3000) + press("3", 5000) + press("1", 1000)[-1:]
    assert detect(packets) == "123"


def test_other_ssrc_same_timestamp_is_new_press() -> None:
    packets = [*press("1", 1000), event_packet("1", 1000, ssrc=999, marker=True)]
    assert detect(packets) == "11"


def test_long_event_segments_are_one_press() -> None:
    # RFC 4733 §2.5.1.3: a press longer than 0xFFFF samples continues under a new timestamp.
    first = [event_packet("0", 100, marker=True), event_packet("0", 100, duration=0xFFFF)]
    continuation = [event_packet("0", 100 + 0xFFFF, duration=160)]
    assert detect(first + continuation) == "0"


def test_malformed_payload_raises() -> None:
    with pytest.raises(RtpParseError):
        DtmfDetector().feed(RtpPacket(PT, 0, 0, 0, True, b"\x01"))


def test_detector_is_a_key_source() -> None:
    source: KeySource = DtmfDetector()
    assert source.feed(press("A", 1)[0]) == "A"


def test_sender_packet_shape() -> None:
    sent = DtmfSender(payload_type=PT, ssrc=42).packets("#", sequence=65534, timestamp=500)
    packets = [p for p, _ in sent]
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True] + [False] * 7
    assert {p.timestamp for p in packets} == {500}
    assert [p.sequence for p in packets] == [65534, 65535, 0, 1, 2, 3, 4, 5]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert [e.end for e in events] == [False] * 5 + [True] * 3
    assert {e.event for e in events} == {11}
    assert [round(offset, 3) for _, offset in sent] == [round(0.02 * i, 3) for i in range(8)]


def test_sender_to_detector_round_trip() -> None:
    sender = DtmfSender(payload_type=PT, ssrc=42)
    detector = DtmfDetector()
    keys, seq, timestamp = "", 0, 2**32 - 1000
    for key in "3#1500#1*ABCD":
        for packet, _ in sender.packets(key, seq, timestamp, duration=0.06):
            keys += detector.feed(RtpPacket.parse(bytes(packet))) or ""
            seq += 1
        timestamp += 1600
    assert keys == "3#1500#1*ABCD"
