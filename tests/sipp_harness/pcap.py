"""Synthesise RFC 4733 DTMF captures that SIPp's ``play_pcap_audio`` can replay.

Why this exists instead of using ``/usr/share/sip-tester/dtmf_2833_N.pcap``:
each of those files carries ONE fixed RTP timestamp, so replaying "1", then "1"
again is -- to a correct RFC 4733 receiver -- the same event seen twice, i.e. a
single key press.  Real phones give every key press a NEW RTP timestamp (the
timestamp of the event's onset) while sequence numbers keep counting across the
whole stream.  This module writes one capture per key sequence with exactly that
shape, plus knobs for the packet-loss / duplication shapes a receiver must survive.

What SIPp 3.6.1 needs from the file (``prepare_pcap.c`` / ``send_packets.c``):

* classic libpcap (not pcapng), link type 1 (Ethernet) or 113 (Linux SLL); we
  write Ethernet/IPv4/UDP; ``caplen`` must equal ``len`` (no truncation);
* only the UDP header + payload are used; IP addresses and UDP ports are
  rewritten: the source becomes ``-mi``/``-mp`` (SIPp's media ip/port), the
  destination the address in the peer's SDP.  Ports are mapped relative to the
  *lowest* destination port in the file, so every packet here uses ONE
  destination port (RTP only, no RTCP);
* RTP header bytes (seq, timestamp, SSRC, marker) are replayed verbatim;
* the replay schedule is the pcap packet timestamps relative to the FIRST
  packet, so silence before the first packet is lost.  ``lead_in_ms`` is
  therefore anchored with one audio frame at t=0 (or real silence frames when
  ``with_audio`` is set).

Timing model of a press (``press_ms`` = 100 by default, 20 ms packetisation):
packets at onset+0, +20, ... carry duration 160, 320, ... (marker on the first);
the final duration is sent in an end packet (E bit) three times, 20 ms apart
(RFC 4733 section 2.5.1.4), each retransmission with its own sequence number.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

__all__ = [
    "DTMF_EVENTS",
    "PcapPacket",
    "RtpPacket",
    "build_audio_packets",
    "build_dtmf_packets",
    "decode_dtmf_presses",
    "parse_rtp",
    "read_pcap_udp",
    "write_dtmf_pcap",
    "write_pcap",
]

SAMPLE_RATE = 8000
PTIME_MS = 20
SAMPLES_PER_FRAME = SAMPLE_RATE * PTIME_MS // 1000  # 160

#: RFC 4733 event codes for the DTMF keys.
DTMF_EVENTS: dict[str, int] = {
    **{str(d): d for d in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}
EVENT_KEYS: dict[int, str] = {v: k for k, v in DTMF_EVENTS.items()}

#: one 20 ms frame of digital silence per G.711 law
SILENCE_BYTE = {0: 0xFF, 8: 0xD5}

_PCAP_GLOBAL = struct.Struct("<IHHiIII")
_PCAP_RECORD = struct.Struct("<IIII")
_LINKTYPE_ETHERNET = 1
_LINKTYPE_LINUX_SLL = 113


@dataclass(frozen=True, slots=True)
class PcapPacket:
    """One UDP datagram scheduled at ``t_ms`` from the start of the capture."""

    t_ms: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """A parsed RTP packet (and, for RFC 4733 payloads, the event fields)."""

    seq: int
    ts: int
    ssrc: int
    pt: int
    marker: bool
    payload: bytes
    event: int | None = None
    end: bool = False
    volume: int = 0
    duration: int = 0


@dataclass(slots=True)
class _Builder:
    ssrc: int
    seq: int
    ts_base: int
    packets: list[PcapPacket] = field(default_factory=list)

    def rtp(self, *, pt: int, marker: bool, ts_ms: float, payload: bytes) -> bytes:
        ts = (self.ts_base + round(ts_ms * SAMPLE_RATE / 1000)) & 0xFFFFFFFF
        hdr = struct.pack(
            "!BBHII", 0x80, (0x80 if marker else 0) | (pt & 0x7F), self.seq, ts, self.ssrc
        )
        self.seq = (self.seq + 1) & 0xFFFF
        return hdr + payload


def rfc4733_payload(event: int, *, end: bool, duration: int, volume: int = 10) -> bytes:
    """The 4-byte RFC 4733 event payload."""
    return struct.pack("!BBH", event & 0xFF, (0x80 if end else 0) | (volume & 0x3F), duration)


def _press_events(keys: str) -> list[int | None]:
    """Keys -> list of event codes, ``None`` meaning a 1 s pause (``,``)."""
    out: list[int | None] = []
    for ch in keys:
        if ch == ",":
            out.append(None)
        elif ch.upper() in DTMF_EVENTS:
            out.append(DTMF_EVENTS[ch.upper()])
        else:
            raise ValueError(f"not a DTMF key: {ch!r} in {keys!r}")
    return out


def build_dtmf_packets(
    keys: str,
    *,
    payload_type: int = 101,
    press_ms: int = 100,
    gap_ms: int = 200,
    drop_marker_of: Iterable[int] = frozenset(),
    duplicate_marker_of: Iterable[int] = frozenset(),
    duplicate_all: bool = False,
    insert_events: Sequence[tuple[int, int]] = (),
    lead_in_ms: int = 500,
    ssrc: int = 0x5EED7A11,
    with_audio: bool = False,
    audio_payload_type: int = 0,
    start_seq: int = 4711,
    start_ts: int = 160_000,
    tail_ms: int = 200,
) -> list[PcapPacket]:
    """Build the RTP datagrams (UDP payloads) with their send times.

    Every press gets a new RTP timestamp (its onset on the 8 kHz clock) and
    sequence numbers continue across presses; ``,`` is a 1 s pause.
    ``drop_marker_of``: press indexes whose first (marker) packet is lost;
    ``duplicate_marker_of``: press indexes whose marker packet arrives twice;
    ``duplicate_all``: every datagram is sent twice (same bytes);
    ``insert_events``: ``(index, event)`` inserts a press of ``event`` (e.g. 16,
    not a DTMF key) before press ``index``; ``with_audio``: G.711 silence
    (``audio_payload_type`` 0 = PCMU, 8 = PCMA) every 20 ms outside events.

    Press indexes (``drop_marker_of``, ``duplicate_marker_of``, ``insert_events``)
    count the key presses of ``keys`` only: commas and inserted events are not
    counted.  ``insert_events=[(2, 16)]`` sends an event-16 press right before
    the third key.
    """
    if press_ms < 2 * PTIME_MS or press_ms % PTIME_MS:
        raise ValueError("press_ms must be a multiple of 20 and >= 40")
    drop = set(drop_marker_of)
    dup_marker = set(duplicate_marker_of)
    inserts: dict[int, list[int]] = {}
    for idx, ev in insert_events:
        inserts.setdefault(idx, []).append(ev)

    # Schedule: (kind, value, key_index) with kind in {"press", "pause"}.
    schedule: list[tuple[str, int, int | None]] = []
    key_index = 0
    for ev in _press_events(keys):
        if ev is None:
            schedule.append(("pause", 1000, None))
            continue
        for extra in inserts.pop(key_index, []):
            schedule.append(("press", extra, None))
        schedule.append(("press", ev, key_index))
        key_index += 1
    for idx in sorted(inserts):  # inserts at/after the end
        for extra in inserts[idx]:
            schedule.append(("press", extra, None))

    b = _Builder(ssrc=ssrc & 0xFFFFFFFF, seq=start_seq & 0xFFFF, ts_base=start_ts)
    silence = bytes([SILENCE_BYTE.get(audio_payload_type, 0xFF)]) * SAMPLES_PER_FRAME
    out: list[PcapPacket] = []
    first_audio = True

    def audio_until(t_from: float, t_to: float) -> None:
        nonlocal first_audio
        t = t_from
        while t < t_to - 1e-9:
            pkt = b.rtp(pt=audio_payload_type, marker=first_audio, ts_ms=t, payload=silence)
            out.append(PcapPacket(t, pkt))
            first_audio = False
            t += PTIME_MS

    t = 0.0
    if with_audio:
        audio_until(0.0, lead_in_ms)
    elif lead_in_ms > 0:
        # SIPp replays relative to the first packet: anchor t=0 with one frame.
        out.append(
            PcapPacket(0.0, b.rtp(pt=audio_payload_type, marker=True, ts_ms=0, payload=silence))
        )
    t = float(lead_in_ms)

    frames = press_ms // PTIME_MS
    for kind, value, kidx in schedule:
        if kind == "pause":
            if with_audio:
                audio_until(t, t + value)
            t += value
            continue
        onset = t
        press_pkts: list[PcapPacket] = []
        for k in range(1, frames):
            payload = rfc4733_payload(value, end=False, duration=k * SAMPLES_PER_FRAME)
            pkt = b.rtp(pt=payload_type, marker=(k == 1), ts_ms=onset, payload=payload)
            press_pkts.append(PcapPacket(onset + (k - 1) * PTIME_MS, pkt))
        final = frames * SAMPLES_PER_FRAME
        for r in range(3):
            payload = rfc4733_payload(value, end=True, duration=final)
            pkt = b.rtp(pt=payload_type, marker=False, ts_ms=onset, payload=payload)
            press_pkts.append(PcapPacket(onset + (frames - 1 + r) * PTIME_MS, pkt))
        if kidx is not None and kidx in dup_marker:
            press_pkts.insert(1, PcapPacket(press_pkts[0].t_ms + 1, press_pkts[0].payload))
        if kidx is not None and kidx in drop:
            press_pkts.pop(0)
        out.extend(press_pkts)
        t = onset + press_ms + 2 * PTIME_MS  # end of the 3rd end packet
        if with_audio:
            audio_until(t, t + gap_ms)
        t += gap_ms

    if with_audio and tail_ms > 0:
        audio_until(t, t + tail_ms)

    if duplicate_all:
        out = [p for orig in out for p in (orig, PcapPacket(orig.t_ms + 0.5, orig.payload))]
    out.sort(key=lambda p: p.t_ms)  # stable: keeps order of equal times
    return out


def build_audio_packets(
    payloads: Sequence[bytes],
    *,
    audio_payload_type: int = 0,
    presses: Sequence[tuple[int, str, int]] = (),
    event_payload_type: int = 101,
    ssrc: int = 0x5EED7A12,
    start_seq: int = 4711,
    start_ts: int = 160_000,
) -> list[PcapPacket]:
    """A phone's continuous audio: ``payloads[i]`` (one 20 ms G.711 frame) at ``20 * i`` ms.

    ``presses`` ``(first_frame, key, frames)`` also sends those keys as RFC 4733
    events *beside* the audio, as a phone in dual DTMF mode does (the audio
    carries the tones; both share SSRC and sequence space). Each press has its
    own timestamp, the frame it starts on; its end packet goes three times.
    """
    b = _Builder(ssrc=ssrc & 0xFFFFFFFF, seq=start_seq & 0xFFFF, ts_base=start_ts)
    events: dict[int, list[bytes]] = {}  # frame index -> event payloads sent then
    onsets: dict[int, int] = {}
    for first, key, frames in presses:
        event = DTMF_EVENTS[key.upper()]
        for k in range(frames + 2):
            end = k >= frames - 1
            duration = min(k + 1, frames) * SAMPLES_PER_FRAME
            events.setdefault(first + k, []).append(
                rfc4733_payload(event, end=end, duration=duration)
            )
            onsets.setdefault(first + k, first)
    out: list[PcapPacket] = []
    for i, payload in enumerate(payloads):
        t = float(i * PTIME_MS)
        pkt = b.rtp(pt=audio_payload_type, marker=i == 0, ts_ms=t, payload=payload)
        out.append(PcapPacket(t, pkt))
        for ev in events.get(i, []):
            onset_ms = onsets[i] * PTIME_MS
            first_of_press = i == onsets[i]
            pkt = b.rtp(pt=event_payload_type, marker=first_of_press, ts_ms=onset_ms, payload=ev)
            out.append(PcapPacket(t + 0.1, pkt))
    return out


def _ip_checksum(header: bytes) -> int:
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _frame(payload: bytes, src: tuple[str, int], dst: tuple[str, int], ident: int) -> bytes:
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", src[1], dst[1], udp_len, 0) + payload  # checksum 0 = none
    ip_hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + udp_len,
        ident & 0xFFFF,
        0,
        64,
        17,
        0,
        bytes(int(x) for x in src[0].split(".")),
        bytes(int(x) for x in dst[0].split(".")),
    )
    ip_hdr = ip_hdr[:10] + struct.pack("!H", _ip_checksum(ip_hdr)) + ip_hdr[12:]
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00"
    return eth + ip_hdr + udp


def write_pcap(
    path: str | Path,
    packets: Iterable[PcapPacket],
    *,
    src: tuple[str, int] = ("192.0.2.1", 40000),
    dst: tuple[str, int] = ("192.0.2.2", 10000),
    epoch_s: int = 1_700_000_000,
) -> Path:
    """Write UDP datagrams as a classic little-endian libpcap, Ethernet link type."""
    path = Path(path)
    with path.open("wb") as fh:
        fh.write(_PCAP_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET))
        for i, p in enumerate(packets):
            frame = _frame(p.payload, src, dst, i)
            us_total = round(p.t_ms * 1000)
            fh.write(
                _PCAP_RECORD.pack(
                    epoch_s + us_total // 1_000_000, us_total % 1_000_000, len(frame), len(frame)
                )
            )
            fh.write(frame)
    return path


def write_dtmf_pcap(path: str | Path, keys: str, **options: Any) -> Path:
    """Write a pcap SIPp's ``<exec play_pcap_audio=...>`` replays as the key presses
    ``keys``; ``options`` are `build_dtmf_packets`'s (loss, duplicates, audio...)."""
    return write_pcap(path, build_dtmf_packets(keys, **options))


# --------------------------------------------------------------------------- reading


def read_pcap_udp(path: str | Path) -> list[tuple[float, bytes]]:
    """(time in ms from the first record, UDP payload) for each IPv4/UDP record."""
    data = Path(path).read_bytes()
    magic = struct.unpack_from("<I", data)[0]
    if magic in (0xA1B2C3D4, 0xA1B23C4D):
        endian = "<"
    elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic libpcap file")
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    l2 = {_LINKTYPE_ETHERNET: 14, _LINKTYPE_LINUX_SLL: 16}.get(linktype)
    if l2 is None:
        raise ValueError(f"{path}: unsupported link type {linktype}")
    off = 24
    out: list[tuple[float, bytes]] = []
    t0: float | None = None
    while off + 16 <= len(data):
        sec, frac, caplen, _len = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        frame = data[off : off + caplen]
        off += caplen
        t = sec * 1000.0 + frac / (1e6 if nano else 1e3)
        if t0 is None:
            t0 = t
        if struct.unpack_from("!H", frame, l2 - 2)[0] != 0x0800:
            continue
        ip = frame[l2:]
        if ip[9] != 17:
            continue
        ihl = (ip[0] & 0x0F) * 4
        udp_len = struct.unpack_from("!H", ip, ihl + 4)[0]
        out.append((t - t0, bytes(ip[ihl + 8 : ihl + udp_len])))
    return out


def parse_rtp(data: bytes, *, event_pts: Iterable[int] = (101,)) -> RtpPacket | None:
    """Parse an RTP datagram; RFC 4733 fields are filled for ``event_pts``."""
    if len(data) < 12 or data[0] >> 6 != 2:
        return None
    cc = data[0] & 0x0F
    has_ext = bool(data[0] & 0x10)
    has_pad = bool(data[0] & 0x20)
    m_pt = data[1]
    seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
    off = 12 + 4 * cc
    if has_ext and len(data) >= off + 4:
        off += 4 + 4 * struct.unpack_from("!H", data, off + 2)[0]
    end_off = len(data) - (data[-1] if has_pad and data else 0)
    payload = data[off:end_off]
    pt = m_pt & 0x7F
    pkt = RtpPacket(seq=seq, ts=ts, ssrc=ssrc, pt=pt, marker=bool(m_pt & 0x80), payload=payload)
    if pt in set(event_pts) and len(payload) >= 4:
        ev, flags, dur = struct.unpack_from("!BBH", payload)
        pkt = replace(pkt, event=ev, end=bool(flags & 0x80), volume=flags & 0x3F, duration=dur)
    return pkt


def decode_dtmf_presses(packets: Iterable[RtpPacket]) -> list[int]:
    """A minimal, correct RFC 4733 receiver: one press per (SSRC, RTP timestamp).

    Duplicates, retransmitted end packets and lost marker packets do not
    create or lose presses.  Returns event codes in order of first sight.
    """
    seen: set[tuple[int, int]] = set()
    events: list[int] = []
    for p in packets:
        if p.event is None:
            continue
        key = (p.ssrc, p.ts)
        if key in seen:
            continue
        seen.add(key)
        events.append(p.event)
    return events


def events_to_keys(events: Iterable[int]) -> str:
    """Event codes -> key string; unknown events become ``?``."""
    return "".join(EVENT_KEYS.get(e, "?") for e in events)
