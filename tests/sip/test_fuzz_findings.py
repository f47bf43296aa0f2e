"""What the SIP fuzz (tests/integration/test_sip_fuzz.py) found, one focused
test each, against a running UserAgent over loopback UDP."""

from __future__ import annotations

import pytest

from tests.sip.test_hostile_requests import request, sdp
from voicebot.sip.call import IncomingCall
from voicebot.sip.message import SipParseError, SipUri, Via


async def ring(call: IncomingCall) -> None:
    await call.ended


@pytest.mark.parametrize("host", ["127.0.0.1\x00", "pbx\x00.example", "a b", "[::1\x00]"])
async def test_a_contact_host_we_could_not_send_to_is_400_and_the_socket_lives(
    make_ua, peers, host: str
) -> None:
    """A NUL in the Contact host became the BYE's destination; asyncio's
    sendto raised TypeError and closed the SIP socket for good."""
    ua = await make_ua(ring)
    pbx = peers()
    via = f"127.0.0.1:{pbx.address[1]}"
    invite = request("INVITE", via, call_id="nul", body=sdp())
    invite = invite.replace(
        f"Contact: <sip:pbx@{via}>".encode(), f"Contact: <sip:pbx@{host}>".encode()
    )
    pbx.send(invite, ua.local_address)
    assert (await pbx.final()).status == 400
    assert ua.calls_in_progress == 0
    pbx.send(request("OPTIONS", via, call_id="after", branch="z9hG4bKafter"), ua.local_address)
    assert (await pbx.response()).status == 200


@pytest.mark.parametrize("text", ["sip:bot@host\x00name", "sip:bot@[zz::1]", "sip:bot@a/b:5060"])
def test_uri_host_outside_the_rfc_3261_grammar_is_refused(text: str) -> None:
    with pytest.raises(SipParseError):
        SipUri.parse(text)


def test_via_host_outside_the_grammar_is_refused() -> None:
    with pytest.raises(SipParseError):
        Via.parse("SIP/2.0/UDP 127.0.0.1\x00:5060;branch=z9hG4bKx")


@pytest.mark.parametrize(
    "text",
    [
        "sip:bot@pbx.example.com:5060",
        "sip:bot@10.0.0.1",
        "sip:bot@[2001:db8::1]:5070",
        "sip:bot@my_pbx.local",
    ],
)
def test_ordinary_hosts_still_parse(text: str) -> None:
    assert SipUri.parse(text).host
