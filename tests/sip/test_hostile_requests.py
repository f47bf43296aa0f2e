"""Hostile and broken requests against a running UserAgent over loopback UDP
(issue 6 items 2, 8 and 11): who gets answered, where, and that every request
ends with a final response and no transaction left behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from voicebot.sip import user_agent as user_agent_module
from voicebot.sip.call import IncomingCall
from voicebot.sip.user_agent import UserAgent


def sdp(port: int = 40000, pts: str = "0 101", rtpmap: str = "a=rtpmap:0 PCMU/8000\r\n") -> bytes:
    return (
        "v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP {pts}\r\n{rtpmap}a=rtpmap:101 telephone-event/8000\r\n"
    ).encode()


def request(
    method: str,
    via: str,
    *,
    branch: str | None = "z9hG4bKh1",
    call_id: str = "c1",
    cseq: str = "1",
    from_user: str = "pbx",
    to_tag: str | None = None,
    body: bytes = b"",
    content_length: str | None = None,
) -> bytes:
    via_value = f"SIP/2.0/UDP {via}" + (f";branch={branch}" if branch is not None else "")
    to = "<sip:bot@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} sip:bot@127.0.0.1 SIP/2.0",
        f"Via: {via_value}",
        f"From: <sip:{from_user}@127.0.0.1>;tag=f-{call_id}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        f"Contact: <sip:{from_user}@{via.split(';')[0]}>",
    ]
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {content_length if content_length is not None else len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def no_transactions_left(ua: UserAgent, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while ua.transactions.server_count:
        assert loop.time() < deadline, f"{ua.transactions.server_count} transactions left"
        await asyncio.sleep(0.02)


# ----------------------------------------------------------------- item 2: strangers


async def test_stranger_gets_one_403_at_its_source_and_the_via_host_gets_nothing(
    make_ua, peers
) -> None:
    ua = await make_ua(allowed_peers=["127.0.0.1/32"])
    stranger, victim = peers("127.0.0.2"), peers("127.0.0.3")
    victim_via = f"{victim.address[0]}:{victim.address[1]};maddr={victim.address[0]}"
    for n in range(10):
        stranger.send(request("INVITE", victim_via, call_id=f"s{n}", body=sdp()), ua.local_address)
    got = await stranger.drain()
    statuses = [r.split(b" ", 2)[1] for r in got]
    assert statuses == [b"403"] * 10  # no 100 Trying first, one answer per INVITE
    assert await victim.silent()
    assert ua.counters.peer_refused == 10
    assert ua.transactions.server_count == 0


async def test_stranger_is_dropped_silently_when_unknown_peer_is_drop(make_ua, peers) -> None:
    ua = await make_ua(allowed_peers=["127.0.0.1/32"], unknown_peer="drop")
    stranger = peers("127.0.0.2")
    stranger.send(request("OPTIONS", f"127.0.0.2:{stranger.address[1]}"), ua.local_address)
    stranger.send(b"INVITE garbage", ua.local_address)
    assert await stranger.silent()
    assert ua.counters.peer_refused == 2


async def test_allowed_peer_response_ignores_maddr(make_ua, peers) -> None:
    ua = await make_ua()
    pbx, victim = peers("127.0.0.1"), peers("127.0.0.3")
    via = f"127.0.0.3:{victim.address[1]};maddr=127.0.0.3"
    pbx.send(request("OPTIONS", via + ";rport"), ua.local_address)
    assert (await pbx.response()).status == 200
    assert await victim.silent()


# ----------------------------------------------------------------- item 8: malformed

HUGE = "9" * 5000


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cseq", HUGE),
        ("cseq", "²"),
        ("content_length", HUGE),
        ("content_length", "²"),
        ("via_port", HUGE),
        ("via_port", "²"),
        ("via_port", "70000"),
    ],
)
async def test_bad_numbers_get_400_at_the_source(make_ua, peers, field: str, value: str) -> None:
    ua = await make_ua()
    pbx = peers()
    via = f"127.0.0.1:{pbx.address[1]}"
    kwargs: dict[str, Any] = {}
    if field == "cseq":
        kwargs["cseq"] = value
    elif field == "content_length":
        kwargs["content_length"] = value
    else:
        via = f"127.0.0.1:{value}"
    pbx.send(request("OPTIONS", via, **kwargs), ua.local_address)
    # raw: the 400 copies the offending header, which our own parser refuses
    assert (await pbx.recv()).startswith(b"SIP/2.0 400 ")
    # and the UA keeps answering
    pbx.send(request("OPTIONS", f"127.0.0.1:{pbx.address[1]}", call_id="ok"), ua.local_address)
    assert (await pbx.response()).status == 200


@pytest.mark.parametrize("dvi4", [5, 6, 16, 17])
async def test_dvi4_alone_is_488_and_no_transaction_stays(make_ua, peers, dvi4: int) -> None:
    ua = await make_ua()
    pbx = peers()
    offer = sdp(pts=f"{dvi4}", rtpmap="")
    pbx.send(request("INVITE", f"127.0.0.1:{pbx.address[1]}", body=offer), ua.local_address)
    assert (await pbx.final()).status == 488
    await no_transactions_left(ua)


async def test_dvi4_with_pcmu_negotiates_pcmu(make_ua, peers) -> None:
    calls: list[IncomingCall] = []

    async def take(call: IncomingCall) -> None:
        calls.append(call)
        await call.reject(486)

    ua = await make_ua(take)
    pbx = peers()
    offer = sdp(pts="5 17 0 101", rtpmap="")
    pbx.send(request("INVITE", f"127.0.0.1:{pbx.address[1]}", body=offer), ua.local_address)
    assert (await pbx.final()).status == 486
    assert calls[0].media.codec_name == "PCMU" and calls[0].media.payload_type == 0


@pytest.mark.parametrize("port", ["65536", "70000", HUGE, "²"])
async def test_sdp_port_out_of_range_is_488(make_ua, peers, port: str) -> None:
    ua = await make_ua()
    pbx = peers()
    offer = sdp().replace(b"m=audio 40000", f"m=audio {port}".encode())
    pbx.send(request("INVITE", f"127.0.0.1:{pbx.address[1]}", body=offer), ua.local_address)
    assert (await pbx.final()).status == 488
    await no_transactions_left(ua)


async def test_a_handler_that_raises_still_answers_500_and_ends_the_transaction(
    make_ua, peers, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in negotiation")

    monkeypatch.setattr(user_agent_module, "negotiate", broken)
    ua = await make_ua()
    pbx = peers()
    pbx.send(request("INVITE", f"127.0.0.1:{pbx.address[1]}", body=sdp()), ua.local_address)
    assert (await pbx.final()).status == 500
    assert ua.counters.handler_errors == 1
    assert ua.calls_in_progress == 0
    await no_transactions_left(ua)


async def test_unreadable_from_in_a_branchless_request_gets_400(make_ua, peers) -> None:
    ua = await make_ua()
    pbx = peers()
    message = request("OPTIONS", f"127.0.0.1:{pbx.address[1]}", branch=None)
    pbx.send(message.replace(b"From: <sip:", b"From: <nosip:"), ua.local_address)
    assert (await pbx.response()).status == 400


# ----------------------------------------------------------------- item 11: RFC 2543 peers


async def test_two_branchless_invites_with_different_call_ids_get_their_own_answers(
    make_ua, peers
) -> None:
    async def by_caller(call: IncomingCall) -> None:
        await call.reject(486 if call.from_user == "alice" else 480)

    ua = await make_ua(by_caller)
    pbx = peers()
    via = f"127.0.0.1:{pbx.address[1]}"
    pbx.send(
        request("INVITE", via, branch=None, call_id="a", from_user="alice", body=sdp()),
        ua.local_address,
    )
    first = await pbx.final()
    pbx.send(
        request("INVITE", via, branch=None, call_id="b", from_user="bob", body=sdp()),
        ua.local_address,
    )
    second = await pbx.final()
    assert (first.call_id, first.status) == ("a", 486)
    assert (second.call_id, second.status) == ("b", 480)


async def test_branchless_retransmission_ack_and_cancel_match_their_invite(make_ua, peers) -> None:
    answered = asyncio.Event()

    async def ring(call: IncomingCall) -> None:
        answered.set()
        await call.ended

    ua = await make_ua(ring)
    pbx = peers()
    via = f"127.0.0.1:{pbx.address[1]}"
    invite = request("INVITE", via, branch=None, call_id="x", body=sdp())
    pbx.send(invite, ua.local_address)
    assert (await pbx.response()).status == 100
    await asyncio.wait_for(answered.wait(), 1)
    pbx.send(invite, ua.local_address)  # a retransmission: the same 100 again, no new call
    assert (await pbx.response()).status == 100
    assert ua.calls_in_progress == 1
    pbx.send(request("CANCEL", via, branch=None, call_id="x"), ua.local_address)
    statuses = {(await pbx.response()).status for _ in range(2)}
    assert statuses == {200, 487}
    assert ua.calls_in_progress == 0
