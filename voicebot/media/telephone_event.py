"""DTMF as RTP telephone-events (RFC 4733): the payload, a detector, a sender.

Stock pyVoIP keyed DTMF on the RTP marker bit, so a press whose marker packet
was lost vanished, a duplicated marker packet doubled the digit, and event 16
(flash) killed its thread. RFC 4733 §2.5.1.2 says every packet of one event
carries the same RTP timestamp, and a new event gets a new one: that timestamp
is the identity of a key press, and it is what `DtmfDetector` keys on.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from voicebot.media.rtp import SEQ_MODULO, TIMESTAMP_MODULO, RtpPacket, RtpParseError

EVENT_KEYS = "0123456789*#ABCD"
"""RFC 4733 §3.2 events 0–15; the index of a key is its event code."""

_EVENT = struct.Struct("!BBH")
_MAX_DURATION = 0xFFFF


@dataclass(slots=True)
class TelephoneEvent:
    """The 4-byte telephone-event payload (RFC 4733 §2.3)."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        # Only the first event is read: redundant events ride in RFC 2198
        # blocks, not concatenated here, and some senders pad the payload.
        if len(data) < _EVENT.size:
            raise RtpParseError(f"telephone-event payload length {len(data)} < 4")
        event, flags, duration = _EVENT.unpack_from(data)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def __bytes__(self) -> bytes:
        flags = (0x80 if self.end else 0) | (self.volume & 0x3F)
        return _EVENT.pack(self.event, flags, self.duration)

    @property
    def key(self) -> str | None:
        return EVENT_KEYS[self.event] if self.event < len(EVENT_KEYS) else None


class KeySource(Protocol):
    """Turns received RTP into key presses, each reported exactly once.

    `DtmfDetector` is the RFC 4733 one. In-band DTMF (tones in the audio)
    does not feed per packet: `RtpSession.on_payload` hands the G.711 payload to
    an `InbandChannel`, and `InbandDtmfReceiver` analyses every call's frame
    together once per media clock tick (voicebot.media.inband_receiver).
    """

    def feed(self, packet: RtpPacket) -> str | None: ...


class DtmfDetector:
    """RFC 4733 receiver: one key per distinct RTP timestamp (per SSRC).

    A key is reported on the *first* packet seen of a new event, like
    Asterisk's DTMF begin: the caller hears the prompt stop as soon as the
    key goes down (barge-in), and a press whose end packets were all lost
    still counts. Marker bits, end bits and durations are not needed to
    decide identity, so loss, duplication and reordering of any packet of
    a press cannot drop or double it.

    The last `memory` event identities are remembered so late duplicates do
    not re-trigger; lookups are by equality, so 32-bit timestamp wrap needs
    no special case. One exception to "new timestamp, new press": an event
    longer than 0xFFFF samples is split into segments (§2.5.1.3) whose new
    timestamp is the old one plus 0xFFFF; such a continuation is not a press.
    """

    def __init__(self, memory: int = 8) -> None:
        self._seen: deque[tuple[int, int]] = deque(maxlen=memory)
        self._last: tuple[int, int, int] | None = None  # ssrc, timestamp, event

    def feed(self, packet: RtpPacket) -> str | None:
        """Return the key of a new press, else None. Raises RtpParseError on a bad payload."""
        event = TelephoneEvent.parse(packet.payload)
        key = event.key
        if key is None:
            return None  # flash (16) and friends: ignored, and not remembered
        identity = (packet.ssrc, packet.timestamp)
        if identity in self._seen:
            return None
        self._seen.append(identity)
        continuation = self._is_continuation(packet, event.event)
        self._last = (packet.ssrc, packet.timestamp, event.event)
        return None if continuation else key

    def _is_continuation(self, packet: RtpPacket, event: int) -> bool:
        if self._last is None or packet.marker:
            return False
        ssrc, timestamp, last_event = self._last
        step = (packet.timestamp - timestamp) % TIMESTAMP_MODULO
        return ssrc == packet.ssrc and last_event == event and step == _MAX_DURATION


@dataclass(frozen=True, slots=True)
class DtmfSender:
    """RFC 4733 §2.5.1 sender: the packets of one key press, one per `ptime`.

    The first packet has the marker bit; all share the press's timestamp;
    duration grows by one packet time each packet; the end packet goes out
    three times (§2.5.1.4) so one lost packet does not leave the key down.
    The caller owns sequence and timestamp: give each press a timestamp
    after the previous one, or the far end will take it for the same press.
    """

    payload_type: int
    ssrc: int
    volume: int = 10
    ptime: float = 0.020
    clock_rate: int = 8000

    def packets(
        self, key: str, sequence: int, timestamp: int, duration: float = 0.100
    ) -> list[tuple[RtpPacket, float]]:
        """Packets for one press with their send offsets in seconds from the first."""
        event = EVENT_KEYS.index(key.upper())
        step = round(self.ptime * self.clock_rate)
        total = min(max(step, round(duration * self.clock_rate)), _MAX_DURATION)
        count = -(-total // step)
        payloads = [
            TelephoneEvent(event, volume=self.volume, duration=min((i + 1) * step, total))
            for i in range(count)
        ]
        payloads += [TelephoneEvent(event, end=True, volume=self.volume, duration=total)] * 3
        return [
            (
                RtpPacket(
                    payload_type=self.payload_type,
                    sequence=(sequence + i) % SEQ_MODULO,
                    timestamp=timestamp % TIMESTAMP_MODULO,
                    ssrc=self.ssrc,
                    marker=i == 0,
                    payload=bytes(payload),
                ),
                i * self.ptime,
            )
            for i, payload in enumerate(payloads)
        ]
