"""What this user agent can do, said once: Allow, Supported, Accept (RFC 3261 §20).

Every response that advertises our methods (OPTIONS 200, 405, the INVITE
200, a re-INVITE 200) and every request that carries Allow (REGISTER,
INVITE) takes it from here, so adding a method changes one line.
"""

from __future__ import annotations

from voicebot.sip.message import SipRequest, SipResponse, build_response

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
SUPPORTED = ""  # no extensions (no 100rel, no timer); sent empty on purpose
ACCEPT = "application/sdp"
KNOWN_UNSUPPORTED = frozenset(
    {"REFER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "UPDATE", "PRACK", "PUBLISH", "REGISTER"}
)


def options_response(request: SipRequest, to_tag: str | None) -> SipResponse:
    """200 to OPTIONS: what we can do (RFC 3261 §11.2)."""
    return build_response(
        request,
        200,
        to_tag=to_tag,
        headers=[("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED)],
    )


def unsupported_response(request: SipRequest, to_tag: str | None) -> SipResponse:
    """405 for a method we know but do not do, 501 for one we do not know (§8.2.1)."""
    status = 405 if request.method in KNOWN_UNSUPPORTED else 501
    return build_response(request, status, to_tag=to_tag, headers=[("Allow", ALLOW)])
