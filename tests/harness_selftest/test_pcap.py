"""Self-tests of tests.sipp_harness.pcap: the capture decodes back to what was asked."""

from __future__ import annotations

import itertools
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.sipp_harness.pcap import (
    RtpPacket,
    build_dtmf_packets,
    decode_dtmf_presses,
    events_to_keys,
    parse_rtp,
    read_pcap_udp,
    write_dtmf_pcap,
)


def _rtp(path: Path) -> list[tuple[float, RtpPacket]]:
    out = []
    for t, data in read_pcap_udp(path):
        pkt = parse_rtp(data)
        assert pkt is not None
        out.append((t, pkt))
    return out


def _events(pkts: list[tuple[float, RtpPacket]]) -> list[RtpPacket]:
    return [p for _, p in pkts if p.event is not None]


def test_1500_four_presses_new_timestamp_each(tmp_path: Path) -> None:
    pcap = write_dtmf_pcap(tmp_path / "d.pcap", "1500")
    raw = pcap.read_bytes()
    assert raw[:4] == bytes.fromhex("d4c3b2a1")  # classic little-endian libpcap
    assert int.from_bytes(raw[20:24], "little") == 1  # LINKTYPE_ETHERNET
    pkts = _rtp(pcap)
    ev = _events(pkts)
    assert events_to_keys(decode_dtmf_presses(ev)) == "1500"

    by_ts: dict[int, list[RtpPacket]] = {}
    for p in ev:
        by_ts.setdefault(p.ts, []).append(p)
    assert len(by_ts) == 4  # the two zeros are two presses
    for group in by_ts.values():
        assert group[0].marker and not any(p.marker for p in group[1:])
        assert [p.duration for p in group if not p.end] == [160, 320, 480, 640]
        ends = [p for p in group if p.end]
        assert len(ends) == 3 and {p.duration for p in ends} == {800}
        assert len({p.event for p in group}) == 1

    seqs = [p.seq for _, p in pkts]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # continuing, no gaps
    assert len({p.ssrc for _, p in pkts}) == 1
    # realistic schedule: 20 ms packetisation, lead-in anchored at t=0
    times = [t for t, _ in pkts]
    assert times[0] == 0 and times[1] == pytest.approx(500)
    assert all(b - a >= 19.9 for a, b in itertools.pairwise(times))
    assert times[-1] < 2500


def test_comma_is_one_second_and_timestamps_follow_clock(tmp_path: Path) -> None:
    pkts = _rtp(write_dtmf_pcap(tmp_path / "d.pcap", "1,1", lead_in_ms=0))
    ev = _events(pkts)
    marks = [(t, p) for t, p in pkts if p.marker]
    assert len(marks) == 2
    (t1, p1), (t2, p2) = marks
    assert t2 - t1 == pytest.approx(100 + 40 + 200 + 1000)
    assert (p2.ts - p1.ts) == round((t2 - t1) * 8)  # 8 kHz clock
    assert decode_dtmf_presses(ev) == [1, 1]


def test_drop_marker_removes_first_packet_only(tmp_path: Path) -> None:
    pkts = _rtp(write_dtmf_pcap(tmp_path / "d.pcap", "123", drop_marker_of={1}))
    ev = _events(pkts)
    two = [p for p in ev if p.event == 2]
    assert len(two) == 6 and not any(p.marker for p in two)
    assert two[0].duration == 320
    seqs = [p.seq for p in ev]
    assert sum(1 for a, b in itertools.pairwise(seqs) if b - a == 2) == 1
    assert events_to_keys(decode_dtmf_presses(ev)) == "123"


def test_duplicate_marker_and_duplicate_all(tmp_path: Path) -> None:
    ev = _events(_rtp(write_dtmf_pcap(tmp_path / "a.pcap", "12", duplicate_marker_of={0})))
    markers = [p for p in ev if p.marker]
    assert len(markers) == 3 and markers[0] == markers[1] and markers[2].event == 2
    assert events_to_keys(decode_dtmf_presses(ev)) == "12"

    single = build_dtmf_packets("12")
    double = build_dtmf_packets("12", duplicate_all=True)
    assert len(double) == 2 * len(single)
    assert [p.payload for p in double[::2]] == [p.payload for p in single]
    assert [p.payload for p in double[1::2]] == [p.payload for p in single]
    assert decode_dtmf_presses(p for x in double if (p := parse_rtp(x.payload))) == [1, 2]


def test_insert_unknown_event(tmp_path: Path) -> None:
    ev = _events(_rtp(write_dtmf_pcap(tmp_path / "d.pcap", "15", insert_events=[(1, 16)])))
    assert decode_dtmf_presses(ev) == [1, 16, 5]


def test_with_audio_interleaves_silence_outside_events(tmp_path: Path) -> None:
    pkts = _rtp(write_dtmf_pcap(tmp_path / "d.pcap", "7", with_audio=True, lead_in_ms=100))
    audio = [(t, p) for t, p in pkts if p.pt == 0]
    assert len(audio) >= 5 and {len(p.payload) for _, p in audio} == {160}
    assert audio[0][1].marker and not any(p.marker for _, p in audio[1:])
    times = [t for t, _ in pkts]
    assert all(b - a == pytest.approx(20) for a, b in itertools.pairwise(times))
    ev_t = [t for t, p in pkts if p.event is not None]
    assert not any(ev_t[0] <= t <= ev_t[-1] for t, _ in audio)  # suppressed during the event
    seqs = [p.seq for _, p in pkts]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_tshark_reads_the_events(tmp_path: Path) -> None:
    pcap = write_dtmf_pcap(tmp_path / "d.pcap", "1500")
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", "udp.port==10000,rtp",
         "-T", "fields", "-e", "rtpevent.event_id", "-e", "rtp.marker"],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    rows = [ln.split("\t") for ln in out.splitlines() if ln.strip()]
    marked = [ev for ev, m in rows if m in ("1", "True") and ev]
    assert marked == ["1", "5", "0", "0"]
