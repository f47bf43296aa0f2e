"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264, RFC 4733).

We speak G.711 only (PCMU, PCMA) plus telephone-event for keypad digits. The
answer keeps the offerer's preference order (RFC 3264 §6.1) and picks the
first codec we support; telephone-event/8000 is echoed with the offerer's
dynamic payload type when offered.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from voicebot.sip.pyvoip_adapter import encoding_name, static_payload_type

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
        name = encoding_name(pt)
        return (name, static_payload_type(name)[1]) if name else None


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
                if not parts[1].split("/")[0].isdigit():
                    raise SdpParseError(f"bad port in m= line: {value!r}")
                pts = [int(p) for p in parts[3:] if p.isdigit()]
                audio = AudioOffer(host="", port=int(parts[1].split("/")[0]), payload_types=pts)
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
                if name == "rtpmap":
                    pt_text, _, encoding = arg.partition(" ")
                    enc_name, _, rest = encoding.partition("/")
                    rate = rest.partition("/")[0]
                    if pt_text.isdigit() and rate.isdigit():
                        audio.rtpmap[int(pt_text)] = (enc_name.strip(), int(rate))
                elif name == "fmtp":
                    pt_text, _, params = arg.partition(" ")
                    if pt_text.isdigit():
                        audio.fmtp[int(pt_text)] = params.strip()
                elif name == "ptime" and arg.strip().isdigit():
                    audio.ptime = int(arg.strip())
    if audio is None:
        raise SdpParseError("no audio stream (m=audio) in SDP")
    host = media_host or session_host
    if not host:
        raise SdpParseError("no connection address (c=) for the audio stream")
    audio.host = host
    if not media_direction_set:
        audio.direction = session_direction
    return audio


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
