"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264, RFC 4733).

We speak G.711 only (PCMU, PCMA) plus telephone-event for keypad digits. The
answer keeps the offerer's preference order (RFC 3264 §6.1) and picks the
first codec we support; telephone-event/8000 is echoed with the offerer's
dynamic payload type when offered.
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
from dataclasses import dataclass, field

from voicebot.sip.message import SipParseError, ascii_int
from voicebot.sip.pyvoip_adapter import static_codec, static_payload_type

SUPPORTED_CODECS = ("PCMU", "PCMA")
TELEPHONE_EVENT = "telephone-event"
DEFAULT_TE_PT = 101


class SdpParseError(ValueError):
    """The body is not SDP we can read."""


@dataclass(slots=True)
class NegotiatedMedia:
    """Where to send RTP and how to encode it, agreed in offer/answer."""

    remote_host: str
    remote_port: int
    codec_name: str
    payload_type: int
    telephone_event_pt: int | None

    @property
    def remote_rtp(self) -> tuple[str, int]:
        return self.remote_host, self.remote_port


@dataclass(slots=True)
class AudioOffer:
    """The audio m= line of a session description, with what it implies."""

    host: str
    port: int
    payload_types: list[int]
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)  # pt -> (name, rate)
    fmtp: dict[int, str] = field(default_factory=dict)
    direction: str = "sendrecv"
    ptime: int | None = None

    def codec(self, pt: int) -> tuple[str, int] | None:
        """(encoding name, clock rate): rtpmap first, else the static table (RFC 3551)."""
        if pt in self.rtpmap:
            return self.rtpmap[pt]
        return static_codec(pt) if pt < 96 else None


def parse_sdp(body: bytes | str) -> AudioOffer:
    """The first audio stream of an SDP body; raise `SdpParseError` when there is none."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    session_host: str | None = None
    session_direction = "sendrecv"
    audio: AudioOffer | None = None
    in_audio = False
    media_host: str | None = None
    media_direction_set = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        kind, value = line[0], line[2:].strip()
        if kind == "m":
            if audio is not None and in_audio:
                in_audio = False
                continue  # only the first audio stream matters
            parts = value.split()
            if audio is None and len(parts) >= 4 and parts[0] == "audio":
                # A port above 65535 was taken and made the first RTP send raise
                # OverflowError: refuse it here, the caller gets 488.
                port = _number(parts[1].split("/")[0], "m= port", 65535)
                pts = [_number(p, "payload type", 127) for p in parts[3:]]
                audio = AudioOffer(host="", port=port, payload_types=pts)
                in_audio = True
            else:
                in_audio = False
        elif kind == "c":
            parts = value.split()
            if len(parts) >= 3:
                host = parts[2].split("/")[0]
                if audio is None:
                    session_host = host
                elif in_audio:
                    media_host = host
        elif kind == "a":
            name, _, arg = value.partition(":")
            if name in ("sendrecv", "sendonly", "recvonly", "inactive"):
                if audio is None:
                    session_direction = name
                elif in_audio:
                    audio.direction = name
                    media_direction_set = True
            elif in_audio and audio is not None:
                # A bad attribute line is skipped, as before: only m= and c=
                # decide whether the offer is usable.
                with contextlib.suppress(SdpParseError):
                    _attribute(audio, name, arg)
    if audio is None:
        raise SdpParseError("no audio stream (m=audio) in SDP")
    connection = media_host or session_host
    if not connection:
        raise SdpParseError("no connection address (c=) for the audio stream")
    audio.host = _unicast_ip(connection)
    if not media_direction_set:
        audio.direction = session_direction
    return audio


def _unicast_ip(host: str) -> str:
    """The c= address as a unicast IP literal.

    A host name would be resolved by `sendto` on the event loop (blocking DNS
    on every packet), 0.0.0.0 reaches the bot's own host on Linux, and
    multicast is not a phone: all three are refused (488).
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise SdpParseError(f"c= address is not an IP literal: {host[:60]!r}") from None
    if address.is_unspecified or address.is_multicast:
        raise SdpParseError(f"c= address {host} is not a unicast address")
    return str(address)


def _attribute(audio: AudioOffer, name: str, arg: str) -> None:
    if name == "rtpmap":
        pt_text, _, encoding = arg.partition(" ")
        enc_name, _, rest = encoding.partition("/")
        rate = rest.partition("/")[0]
        audio.rtpmap[_number(pt_text, "rtpmap payload type", 127)] = (
            enc_name.strip(),
            _number(rate, "rtpmap clock rate", 10_000_000),
        )
    elif name == "fmtp":
        pt_text, _, params = arg.partition(" ")
        audio.fmtp[_number(pt_text, "fmtp payload type", 127)] = params.strip()
    elif name == "ptime":
        audio.ptime = _number(arg, "ptime", 10_000)


def _number(text: str, what: str, maximum: int) -> int:
    """ASCII digits within 0..maximum (RFC 4566 fields are ASCII), else SdpParseError."""
    try:
        return ascii_int(text, what, maximum=maximum)
    except SipParseError as exc:
        raise SdpParseError(str(exc)) from None


def negotiate(
    offer: AudioOffer, supported: tuple[str, ...] | list[str] = SUPPORTED_CODECS
) -> NegotiatedMedia | None:
    """Pick the offerer's first codec we support; None when there is none (-> 488)."""
    wanted = {name.upper() for name in supported}
    chosen: tuple[int, str] | None = None
    te_pt: int | None = None
    for pt in offer.payload_types:
        codec = offer.codec(pt)
        if codec is None:
            continue
        name, rate = codec
        if chosen is None and name.upper() in wanted and rate == 8000:
            chosen = (pt, name.upper())
        elif name.lower() == TELEPHONE_EVENT and rate == 8000 and te_pt is None:
            te_pt = pt
    if chosen is None or offer.port == 0:
        return None
    return NegotiatedMedia(offer.host, offer.port, chosen[1], chosen[0], te_pt)


def _session_lines(host: str, session_id: int, version: int) -> list[str]:
    family = "IP6" if ":" in host else "IP4"
    return [
        "v=0",
        f"o=voicebot {session_id} {version} IN {family} {host}",
        "s=voicebot",
        f"c=IN {family} {host}",
        "t=0 0",
    ]


def build_answer(
    media: NegotiatedMedia, local_host: str, local_port: int, *, session_id: int | None = None
) -> bytes:
    """The SDP answer for `media` (RFC 3264 §6): one codec, plus telephone-event if offered."""
    sid = session_id if session_id is not None else secrets.randbelow(2**31)
    pts = [media.payload_type]
    lines = _session_lines(local_host, sid, sid)
    if media.telephone_event_pt is not None:
        pts.append(media.telephone_event_pt)
    lines.append(f"m=audio {local_port} RTP/AVP {' '.join(map(str, pts))}")
    lines.append(f"a=rtpmap:{media.payload_type} {media.codec_name}/8000")
    if media.telephone_event_pt is not None:
        lines.append(f"a=rtpmap:{media.telephone_event_pt} {TELEPHONE_EVENT}/8000")
        # Only the DTMF keys (RFC 4733 §3.2 events 0-15): the menu uses nothing
        # else, and an answer must not claim events the offer may lack (flash).
        lines.append(f"a=fmtp:{media.telephone_event_pt} 0-15")
    lines += ["a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()


def build_offer(
    local_host: str,
    local_port: int,
    codecs: list[str] | tuple[str, ...] = SUPPORTED_CODECS,
    *,
    telephone_event_pt: int = DEFAULT_TE_PT,
    session_id: int | None = None,
) -> bytes:
    """An SDP offer (client side): the given static codecs in order, then telephone-event."""
    sid = session_id if session_id is not None else secrets.randbelow(2**31)
    static = [(name.upper(), static_payload_type(name)[0]) for name in codecs]
    pts = [pt for _, pt in static] + [telephone_event_pt]
    lines = _session_lines(local_host, sid, sid)
    lines.append(f"m=audio {local_port} RTP/AVP {' '.join(map(str, pts))}")
    lines += [f"a=rtpmap:{pt} {name}/8000" for name, pt in static]
    lines.append(f"a=rtpmap:{telephone_event_pt} {TELEPHONE_EVENT}/8000")
    lines.append(f"a=fmtp:{telephone_event_pt} 0-16")
    lines += ["a=ptime:20", "a=sendrecv"]
    return ("\r\n".join(lines) + "\r\n").encode()
