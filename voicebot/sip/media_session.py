"""A SIP call's RTP session (`voicebot.media`), built from what its offer/answer settled.

Every call the bot carries (the post-call menu, a missed call it answers, a
callback leg it places, the bundled softphone's) sends to the SDP address in
the negotiated codec and takes RFC 4733 keys on the negotiated payload type;
a call from a phone behind NAT may also send its media from its signalling
IP, which `learn_from` names.
"""

from __future__ import annotations

from collections.abc import Callable

from voicebot.media.clock import MediaClock
from voicebot.media.g711 import CODECS
from voicebot.media.session import Logger, RtpEndpoint, RtpSession
from voicebot.sip.sdp import NegotiatedMedia


def call_rtp_session(
    endpoint: RtpEndpoint,
    media: NegotiatedMedia,
    clock: MediaClock,
    *,
    learn_from: str | None = None,
    on_key: Callable[[str], None] | None = None,
    on_audio: Callable[[bytes], None] | None = None,
    logger: Logger | None = None,
) -> RtpSession:
    """The session on `endpoint` for a call whose media `media` describes (not started)."""
    return RtpSession(
        endpoint,
        media.remote_rtp,
        CODECS[media.codec_name],
        clock,
        dtmf_payload_type=media.telephone_event_pt,
        on_key=on_key,
        on_audio=on_audio,
        learn_from=(learn_from,) if learn_from is not None else (),
        logger=logger,
    )
