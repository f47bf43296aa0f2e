"""Overload against a running UserAgent over loopback UDP (issue 6 item 9):
503 + Retry-After beyond `sip.max_calls` and beyond a source's INVITE rate,
each refusal one warning line without a traceback, and callers that never
ACK cannot hold every place for 64·T1."""

from __future__ import annotations

import asyncio
from typing import Any

from structlog.testing import capture_logs

from tests.sip.conftest import T1
from tests.sip.test_hostile_requests import request, sdp
from tests.sip.udp_peer import UdpPeer
from voicebot.sip.call import CallEnded, IncomingCall
from voicebot.sip.message import SipResponse
from voicebot.sip.user_agent import ACK_OVERDUE_T1, UserAgent


async def hold(call: IncomingCall) -> None:
    """Ring forever: the call keeps its place until it ends."""
    await call.ended


async def answer(call: IncomingCall) -> None:
    """Answer at once (as the app does); the caller decides whether to ACK."""
    try:
        await call.answer("127.0.0.1", 40000)
    except CallEnded:
        return
    await call.ended


def invite(peer: UdpPeer, call_id: str) -> bytes:
    return request(
        "INVITE",
        f"127.0.0.1:{peer.address[1]}",
        call_id=call_id,
        branch=f"z9hG4bK{call_id}",
        body=sdp(),
    )


def refusals(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in logs if e["event"].startswith("sip.invite")]


def assert_no_errors(logs: list[dict[str, Any]]) -> None:
    bad = [e for e in logs if e["log_level"] in ("error", "critical") or e.get("exc_info")]
    assert not bad, bad


async def assert_ringing(pbx: UdpPeer, ua: UserAgent, name: str, count: int) -> None:
    """`count` INVITEs (Call-IDs name0, name1, ...) each taken: 100 Trying."""
    for n in range(count):
        pbx.send(invite(pbx, f"{name}{n}"), ua.local_address)
        assert (await pbx.response()).status == 100


async def assert_refused(
    pbx: UdpPeer, ua: UserAgent, name: str, count: int, *, retry_after: str
) -> None:
    """`count` INVITEs each refused: 503 with this Retry-After."""
    for n in range(count):
        pbx.send(invite(pbx, f"{name}{n}"), ua.local_address)
        final: SipResponse = await pbx.final()
        assert (final.status, final.headers.get("Retry-After")) == (503, retry_after)


async def statuses_until(peer: UdpPeer, wanted: int, call_id: str) -> list[int]:
    got: list[int] = []
    while wanted not in got:
        response = await peer.response(timeout=2.0)
        if response.call_id == call_id:
            got.append(response.status)
    return got


async def test_beyond_max_calls_is_503_with_retry_after_in_one_warning_line(make_ua, peers) -> None:
    with capture_logs() as logs:
        ua: UserAgent = await make_ua(hold, max_calls=2)
        pbx = peers()
        await assert_ringing(pbx, ua, "up", 2)
        await assert_refused(pbx, ua, "over", 5, retry_after="10")
    assert ua.calls_in_progress == 2 and ua.counters.overloaded == 5
    lines = refusals(logs)
    # five refusals inside a second: one line, the rest counted on the next one
    assert [(e["event"], e["reason"], e["log_level"]) for e in lines] == [
        ("sip.invite_refused", "max_calls", "warning")
    ]
    assert_no_errors(logs)


async def test_a_source_over_its_invite_rate_gets_503_in_one_warning_line(make_ua, peers) -> None:
    with capture_logs() as logs:
        ua: UserAgent = await make_ua(hold, invite_rate_per_source=0.1, invite_burst_per_source=2)
        pbx = peers()
        await assert_ringing(pbx, ua, "ok", 2)
        await assert_refused(pbx, ua, "fast", 2, retry_after="2")
    assert ua.counters.rate_limited == 2 and ua.calls_in_progress == 2
    assert ua.transactions.server_count == 2  # stateless: the refusals made no transaction
    lines = refusals(logs)
    assert [(e["event"], e["log_level"]) for e in lines] == [("sip.invite_rate_limited", "warning")]
    assert_no_errors(logs)


async def test_full_of_unacked_calls_the_most_overdue_is_shed_for_a_new_one(make_ua, peers) -> None:
    with capture_logs() as logs:
        ua: UserAgent = await make_ua(answer, max_calls=2)
        flood, pbx = peers(), peers()
        for n in range(2):  # answered, never ACKed: each holds a place
            flood.send(invite(flood, f"noack{n}"), ua.local_address)
            await statuses_until(flood, 200, f"noack{n}")
        # not overdue yet: the house is full
        pbx.send(invite(pbx, "early"), ua.local_address)
        assert (await pbx.final()).status == 503
        loop = asyncio.get_running_loop()
        overdue_at = loop.time() + ACK_OVERDUE_T1 * T1
        while loop.time() < overdue_at:  # the flood's 200s go unanswered meanwhile
            await asyncio.sleep(T1)
        pbx.send(invite(pbx, "legit"), ua.local_address)
        assert 200 in await statuses_until(pbx, 200, "legit")
        # the first un-ACKed call got its BYE, the second still waits
        byes = {
            m.split(b"Call-ID: ")[1].split(b"\r\n")[0]
            for m in await flood.drain(0.1)
            if m.startswith(b"BYE ")
        }
        assert byes == {b"noack0"}  # retransmitted until answered, for the one call
    assert ua.counters.unacked_shed == 1 and ua.counters.overloaded == 1
    assert ua.calls_in_progress == 2
    shed = [e for e in logs if e["event"] == "sip.unacked_call_shed"]
    assert len(shed) == 1 and shed[0]["log_level"] == "warning"
    assert shed[0]["sip_call_id"] == "noack0"
    assert_no_errors(logs)
