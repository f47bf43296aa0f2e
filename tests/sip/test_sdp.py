"""SDP offer/answer (voicebot.sip.sdp)."""

from __future__ import annotations

from voicebot.sip.sdp import build_answer, build_offer, negotiate, parse_sdp


def offer(
    m_line: str, *attrs: str, session_c: str = "c=IN IP4 192.0.2.10", media_c: str = ""
) -> bytes:
    lines = ["v=0", "o=pbx 1 1 IN IP4 192.0.2.10", "s=-", session_c, "t=0 0", m_line]
    if media_c:
        lines.append(media_c)
    lines += list(attrs)
    return ("\r\n".join(lines) + "\r\n").encode()


def test_pcmu_first_keeps_offerer_order_with_telephone_event_101() -> None:
    media = negotiate(
        parse_sdp(offer("m=audio 4000 RTP/AVP 0 8 101", "a=rtpmap:101 telephone-event/8000"))
    )
    assert media is not None
    assert (media.codec_name, media.payload_type, media.telephone_event_pt) == ("PCMU", 0, 101)
    assert media.remote_rtp == ("192.0.2.10", 4000)


def test_pcma_preferred_by_offerer_with_te_96_and_media_level_c() -> None:
    media = negotiate(
        parse_sdp(
            offer(
                "m=audio 5004 RTP/AVP 18 8 0 96",
                "a=rtpmap:18 G729/8000",
                "a=rtpmap:96 telephone-event/8000",
                "a=fmtp:96 0-15",
                media_c="c=IN IP4 198.51.100.7",
            )
        )
    )
    assert media is not None
    assert (media.codec_name, media.payload_type, media.telephone_event_pt) == ("PCMA", 8, 96)
    assert media.remote_host == "198.51.100.7"


def test_g729_only_has_no_common_codec() -> None:
    assert negotiate(parse_sdp(offer("m=audio 4000 RTP/AVP 18", "a=rtpmap:18 G729/8000"))) is None


def test_without_telephone_event_we_still_answer() -> None:
    media = negotiate(parse_sdp(offer("m=audio 4000 RTP/AVP 8")))
    assert media is not None and media.telephone_event_pt is None
    answer = build_answer(media, "10.0.0.5", 20000).decode()
    assert "m=audio 20000 RTP/AVP 8\r\n" in answer
    assert "telephone-event" not in answer


def test_answer_lines() -> None:
    media = negotiate(
        parse_sdp(offer("m=audio 4000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000"))
    )
    assert media is not None
    answer = build_answer(media, "10.0.0.5", 20002, session_id=7).decode()
    for line in (
        "o=voicebot 7 7 IN IP4 10.0.0.5",
        "c=IN IP4 10.0.0.5",
        "m=audio 20002 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-15",
        "a=ptime:20",
        "a=sendrecv",
    ):
        assert line + "\r\n" in answer


def test_offer_round_trips_through_our_parser() -> None:
    parsed = parse_sdp(build_offer("10.0.0.9", 30000, ["PCMA", "PCMU"]))
    assert parsed.payload_types == [8, 0, 101] and parsed.port == 30000
    media = negotiate(parsed)
    assert media is not None and media.codec_name == "PCMA" and media.telephone_event_pt == 101
