"""SIP message parsing and building (voicebot.sip.message) vs stock pyVoIP."""

from __future__ import annotations

import pytest

from voicebot.sip import message as sip

INVITE_EMPTY_SUPPORTED = (
    b"INVITE sip:bot@10.0.0.5:5062 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport\r\n"
    b'From: "Ann" <sip:201@10.0.0.1>;tag=a1\r\n'
    b"To: <sip:bot@10.0.0.5>\r\n"
    b"Call-ID: c1@10.0.0.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Supported:\r\n"
    b"X-Manager: 201\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_stock_pyvoip_loses_an_invite_with_an_empty_header() -> None:
    import pyVoIP.VoIP  # noqa: F401  (import order, see pyvoip_adapter)
    from pyVoIP.SIP import SIPMessage

    with pytest.raises(IndexError):
        SIPMessage(INVITE_EMPTY_SUPPORTED)


def test_empty_header_value_is_kept() -> None:
    message = sip.parse_message(INVITE_EMPTY_SUPPORTED)
    assert isinstance(message, sip.SipRequest)
    assert message.headers.get("Supported") == ""
    assert message.headers.get("x-manager") == "201"
    assert message.from_.display == "Ann" and message.from_.tag == "a1"


def test_compact_forms_and_case_insensitive_names() -> None:
    data = (
        b"INFO sip:bot@h SIP/2.0\r\n"
        b"v: SIP/2.0/UDP 1.2.3.4:5060;branch=z9hG4bKx\r\n"
        b"f: <sip:a@h>;tag=1\r\nt: <sip:b@h>;tag=2\r\ni: abc\r\n"
        b"cseq: 7 INFO\r\nm: <sip:a@1.2.3.4>\r\nc: application/dtmf\r\nk: timer\r\n"
        b"l: 1\r\n\r\n5"
    )
    message = sip.parse_message(data)
    assert message.call_id == "abc"
    assert message.cseq == (7, "INFO")
    assert message.headers.get("Contact") == "<sip:a@1.2.3.4>"
    assert message.headers.get("SUPPORTED") == "timer"
    assert message.content_type == "application/dtmf"
    assert message.body == b"5"


def test_folded_lines_and_multiple_vias() -> None:
    data = (
        b"BYE sip:bot@h SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP proxy.example:5060;branch=z9hG4bKp,\r\n"
        b" SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKa;received=192.0.2.1\r\n"
        b"Via: SIP/2.0/TCP [2001:db8::1]:5080;branch=z9hG4bKb\r\n"
        b"Subject: a long\r\n\tsubject\r\n"
        b"From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: x\r\nCSeq: 2 BYE\r\n\r\n"
    )
    message = sip.parse_message(data)
    vias = message.vias
    assert [v.host for v in vias] == ["proxy.example", "10.0.0.1", "2001:db8::1"]
    assert vias[1].received == "192.0.2.1" and vias[2].port == 5080
    assert message.headers.get("Subject") == "a long subject"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x01garbage",
        b"hello world\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",  # no CSeq etc.
        b"SIP/2.0 abc OK\r\n\r\n",
        INVITE_EMPTY_SUPPORTED.replace(b"Content-Length: 0", b"Content-Length: 50"),
        INVITE_EMPTY_SUPPORTED.replace(b"X-Manager: 201", b"no colon here"),
    ],
)
def test_garbage_raises_sip_parse_error(data: bytes) -> None:
    with pytest.raises(sip.SipParseError):
        sip.parse_message(data)


def test_body_is_cut_to_content_length() -> None:
    data = INVITE_EMPTY_SUPPORTED.replace(b"Content-Length: 0", b"Content-Length: 3") + b"abcdef"
    assert sip.parse_message(data).body == b"abc"


def test_uri_name_addr_via_round_trip() -> None:
    uri = sip.SipUri.parse("sip:201:pw@pbx.local:5070;transport=udp;lr")
    assert (uri.user, uri.password, uri.host, uri.port) == ("201", "pw", "pbx.local", 5070)
    assert uri.params == {"transport": "udp", "lr": None}
    assert sip.SipUri.parse(str(uri)) == uri
    addr = sip.NameAddr.parse('"Sales, Kyiv" <sip:201@pbx.local>;tag=xyz;expires=60')
    assert addr.display == "Sales, Kyiv" and addr.tag == "xyz"
    assert addr.params["expires"] == "60"
    assert sip.NameAddr.parse(str(addr)) == addr
    bare = sip.NameAddr.parse("sip:201@pbx.local;tag=9")
    assert bare.tag == "9" and bare.uri.params == {}
    via = sip.Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKq;rport=5071;received=1.2.3.4")
    assert (via.branch, via.rport, via.received) == ("z9hG4bKq", 5071, "1.2.3.4")


def test_response_copies_dialog_headers_and_adds_our_tag() -> None:
    request = sip.parse_message(INVITE_EMPTY_SUPPORTED)
    assert isinstance(request, sip.SipRequest)
    trying = sip.build_response(request, 100, to_tag="ours")
    assert trying.to.tag is None and trying.reason == "Trying"
    ok = sip.build_response(
        request, 200, to_tag="ours", body=b"v=0\r\n", content_type="application/sdp"
    )
    assert ok.to.tag == "ours" and ok.reason == "OK"
    assert ok.headers.get("Via") == request.headers.get("Via")
    assert ok.call_id == request.call_id and ok.cseq == (1, "INVITE")
    again = sip.parse_message(bytes(ok))
    assert isinstance(again, sip.SipResponse)
    assert again.headers.get("Content-Length") == "5" and again.body == b"v=0\r\n"


def test_423_reason_phrase_spelled_right() -> None:
    request = sip.parse_message(INVITE_EMPTY_SUPPORTED)
    assert isinstance(request, sip.SipRequest)
    assert sip.build_response(request, 423).reason == "Interval Too Brief"
