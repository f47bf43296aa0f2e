"""Media for voicebot: RTP (RFC 3550), DTMF events (RFC 4733), G.711, one clock for all calls."""

from voicebot.media.clock import MediaClock, Tickable
from voicebot.media.g711 import CODECS, PCMA, PCMU, Codec, by_payload_type
from voicebot.media.player import PromptPlayer
from voicebot.media.rtp import RtpPacket, RtpParseError, seq_newer
from voicebot.media.session import RtpEndpoint, RtpPortPool, RtpPortsExhausted, RtpSession, RtpStats
from voicebot.media.telephone_event import (
    EVENT_KEYS,
    DtmfDetector,
    DtmfSender,
    KeySource,
    TelephoneEvent,
)

__all__ = [
    "CODECS",
    "EVENT_KEYS",
    "PCMA",
    "PCMU",
    "Codec",
    "DtmfDetector",
    "DtmfSender",
    "KeySource",
    "MediaClock",
    "PromptPlayer",
    "RtpEndpoint",
    "RtpPacket",
    "RtpParseError",
    "RtpPortPool",
    "RtpPortsExhausted",
    "RtpSession",
    "RtpStats",
    "TelephoneEvent",
    "Tickable",
    "by_payload_type",
    "seq_newer",
]
