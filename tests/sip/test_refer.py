"""REFER (RFC 3515) and the NOTIFY sipfrags that follow it, and the UAC states
that decide an outgoing INVITE's responses: the bot's `UserAgent` against a
bare UDP socket playing the PBX on loopback."""

from __future__ import annotations

import asyncio

import pytest

from tests.sip.udp_peer import UdpPeer
from voicebot.settings import SipSettings
from voicebot.sip.call import CallFailed, OutgoingCall
from voicebot.sip.message import (
    SipRequest,
    SipResponse,
    build_response,
    new_tag,
    parse_message,
)
from voicebot.sip.refer import parse_sipfrag, subscription_state, transfer_kind
from voicebot.sip.sdp import build_offer
from voicebot.sip.user_agent import UserAgent

PBX_TAG = "pbx" + new_tag()


def test_sipfrag_status_line() -> None:
    ok = parse_sipfrag(b"SIP/2.0 200 OK\r\n")
    assert ok is not None and (ok.status, ok.reason) == (200, "OK")
    frag = parse_sipfrag(b"SIP/2.0 486 Busy Here\r\nContent-Length: 0\r\n\r\n")
    assert frag is not None and (frag.status, frag.reason) == (486, "Busy Here")
    assert parse_sipfrag(b"SIP/2.0 100") is not None
    for bad in (b"", b"INVITE sip:x SIP/2.0", b"SIP/2.0 99 x", b"SIP/2.0 2000 OK", b"\xff\xfe"):
        assert parse_sipfrag(bad) is None, bad


def test_transfer_kind_per_status() -> None:
    assert [transfer_kind(s) for s in (200, 202, 486, 600, 408, 480, 487, 403, 503)] == [
        "completed",
        "completed",
        "busy",
        "busy",
        "no_answer",
        "no_answer",
        "no_answer",
        "failed",
        "failed",
    ]


def test_subscription_state_header() -> None:
    message = parse_message(
        b"NOTIFY sip:bot@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKx\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 NOTIFY\r\n"
        b"Subscription-State: terminated;reason=noresource\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(message, SipRequest)
    assert subscription_state(message) == ("terminated", "noresource")


class Pbx:
    """The far end of the bot's outgoing call, scripted step by step."""

    def __init__(self) -> None:
        self.peer = UdpPeer()
        self.invite: SipRequest | None = None
        self.bot: tuple[str, int] | None = None
        self.cseq = 100

    @property
    def address(self) -> tuple[str, int]:
        return self.peer.address

    async def request(self, timeout: float = 3.0) -> SipRequest:
        while True:
            message = parse_message(await self.peer.recv(timeout))
            if isinstance(message, SipRequest):
                return message

    async def expect(self, method: str, timeout: float = 3.0) -> SipRequest:
        while True:
            request = await self.request(timeout)
            if request.method == method:
                return request

    def reply(self, request: SipRequest, status: int, **kw: object) -> SipResponse:
        response = build_response(request, status, to_tag=PBX_TAG, **kw)  # type: ignore[arg-type]
        assert self.bot is not None
        self.peer.send(bytes(response), self.bot)
        return response

    async def take_invite(self) -> SipRequest:
        invite = await self.expect("INVITE")
        self.invite = invite
        via = invite.top_via
        self.bot = (via.host, via.port or 5060)
        return invite

    def answer(self, invite: SipRequest) -> SipResponse:
        host, port = self.address
        return self.reply(
            invite,
            200,
            headers=[("Contact", f"<sip:mgr@{host}:{port}>")],
            body=build_offer("127.0.0.1", 40000, ["PCMU"]),
            content_type="application/sdp",
        )

    def in_dialog(
        self, method: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> SipRequest:
        assert self.invite is not None and self.bot is not None
        self.cseq += 1
        host, port = self.address
        bot_from = self.invite.headers.get("From") or ""
        to = self.invite.headers.get("To") or ""
        target = (self.invite.headers.get("Contact") or "").strip("<>")
        lines = [
            f"{method} {target} SIP/2.0",
            f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{new_tag()}",
            f"From: {to};tag={PBX_TAG}",
            f"To: {bot_from}",
            f"Call-ID: {self.invite.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:mgr@{host}:{port}>",
            *(f"{n}: {v}" for n, v in headers),
            f"Content-Length: {len(body)}",
        ]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        message = parse_message(data)
        assert isinstance(message, SipRequest)
        self.peer.send(data, self.bot)
        return message

    async def response_to(self, method: str, timeout: float = 2.0) -> SipResponse:
        while True:
            message = parse_message(await self.peer.recv(timeout))
            if isinstance(message, SipResponse) and message.cseq[1] == method:
                return message

    def notify(self, frag: bytes, state: str) -> SipRequest:
        return self.in_dialog(
            "NOTIFY",
            frag,
            (
                ("Event", "refer"),
                ("Subscription-State", state),
                ("Content-Type", "message/sipfrag;version=2.0"),
            ),
        )


@pytest.fixture
async def bot() -> UserAgent:
    ua = UserAgent(
        SipSettings(bind_port=0, username="bot", password="secret"), lambda call: None, t1=0.05
    )
    await ua.start()
    yield ua  # type: ignore[misc]
    await ua.stop()


@pytest.fixture
async def pbx() -> Pbx:
    far = Pbx()
    yield far  # type: ignore[misc]
    far.peer.close()


def dial(bot: UserAgent, pbx: Pbx, user: str = "201") -> OutgoingCall:
    host, port = pbx.address
    return bot.invite(f"sip:{user}@{host}:{port}", from_user="bot", local_rtp=("127.0.0.1", 41000))


async def up(bot: UserAgent, pbx: Pbx) -> OutgoingCall:
    call = dial(bot, pbx)
    invite = await pbx.take_invite()
    pbx.reply(invite, 180)
    pbx.answer(invite)
    ack = await pbx.expect("ACK")
    assert ack.to.tag == PBX_TAG  # the ACK carries the 2xx's To tag
    await call.wait_answered(2)
    return call


async def test_refer_followed_to_a_200_sipfrag_then_our_leg_hangs_up(
    bot: UserAgent, pbx: Pbx
) -> None:
    call = await up(bot, pbx)
    transfer = asyncio.create_task(call.refer("sip:+380441234567@127.0.0.1", timeout_s=5))
    refer = await pbx.expect("REFER")
    assert refer.headers.get("Refer-To") == "<sip:+380441234567@127.0.0.1>"
    assert refer.to.tag == PBX_TAG
    pbx.reply(refer, 202)
    pbx.notify(b"SIP/2.0 100 Trying\r\n", "active;expires=60")
    assert (await pbx.response_to("NOTIFY")).status == 200
    pbx.notify(b"SIP/2.0 180 Ringing\r\n", "active;expires=60")
    assert (await pbx.response_to("NOTIFY")).status == 200
    assert not transfer.done()
    pbx.notify(b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource")
    assert (await pbx.response_to("NOTIFY")).status == 200
    result = await asyncio.wait_for(transfer, 2)
    assert (result.kind, result.status) == ("completed", 200)
    await call.hangup()
    bye = await pbx.expect("BYE")
    assert bye.to.tag == PBX_TAG
    pbx.reply(bye, 200)


@pytest.mark.parametrize(
    ("frag", "kind"),
    [(b"SIP/2.0 486 Busy Here", "busy"), (b"SIP/2.0 487 Request Terminated", "no_answer"),
     (b"SIP/2.0 603 Decline", "failed")],
)  # fmt: skip
async def test_final_sipfrag_maps_to_kind(bot: UserAgent, pbx: Pbx, frag: bytes, kind: str) -> None:
    call = await up(bot, pbx)
    transfer = asyncio.create_task(call.refer("sip:100@127.0.0.1", timeout_s=5))
    pbx.reply(await pbx.expect("REFER"), 202)
    pbx.notify(frag + b"\r\n", "terminated")
    assert (await pbx.response_to("NOTIFY")).status == 200
    result = await asyncio.wait_for(transfer, 2)
    assert result.kind == kind and result.status == int(frag.split()[1])


async def test_refer_refused_is_failed_with_its_status(bot: UserAgent, pbx: Pbx) -> None:
    call = await up(bot, pbx)
    transfer = asyncio.create_task(call.refer("sip:100@127.0.0.1", timeout_s=5))
    pbx.reply(await pbx.expect("REFER"), 405)
    result = await asyncio.wait_for(transfer, 2)
    assert (result.kind, result.status) == ("failed", 405)


async def test_far_end_bye_during_transfer_ends_it_with_what_was_heard(
    bot: UserAgent, pbx: Pbx
) -> None:
    call = await up(bot, pbx)
    transfer = asyncio.create_task(call.refer("sip:100@127.0.0.1", timeout_s=5))
    pbx.reply(await pbx.expect("REFER"), 202)
    pbx.notify(b"SIP/2.0 200 OK\r\n", "active")
    assert (await pbx.response_to("NOTIFY")).status == 200
    pbx.in_dialog("BYE")
    assert (await pbx.response_to("BYE")).status == 200
    result = await asyncio.wait_for(transfer, 2)
    assert (result.kind, result.status) == ("completed", 200)
    assert call.ended.result() == "remote_bye"


async def test_notify_of_another_event_gets_489_and_none_outside_a_transfer_481(
    bot: UserAgent, pbx: Pbx
) -> None:
    call = await up(bot, pbx)
    pbx.notify(b"SIP/2.0 200 OK\r\n", "terminated")
    assert (await pbx.response_to("NOTIFY")).status == 481
    transfer = asyncio.create_task(call.refer("sip:100@127.0.0.1", timeout_s=5))
    pbx.reply(await pbx.expect("REFER"), 202)
    pbx.in_dialog("NOTIFY", b"x", (("Event", "presence"), ("Subscription-State", "active")))
    assert (await pbx.response_to("NOTIFY")).status == 489
    pbx.notify(b"SIP/2.0 200 OK\r\n", "terminated")
    assert (await asyncio.wait_for(transfer, 2)).kind == "completed"


# ------------------------------------------------------------------ UAC states


async def test_407_challenge_answered_once_with_proxy_authorization(
    bot: UserAgent, pbx: Pbx
) -> None:
    call = dial(bot, pbx)
    invite = await pbx.take_invite()
    challenge = 'Digest realm="pbx", nonce="abc123", algorithm=MD5, qop="auth"'
    pbx.reply(invite, 407, headers=[("Proxy-Authenticate", challenge)])
    await pbx.expect("ACK")  # the transaction ACKs the 407
    again = await pbx.take_invite()
    credentials = again.headers.get("Proxy-Authorization") or ""
    assert 'username="bot"' in credentials and 'realm="pbx"' in credentials
    assert again.cseq[0] > invite.cseq[0] and again.call_id == invite.call_id
    pbx.reply(again, 407, headers=[("Proxy-Authenticate", challenge)])
    with pytest.raises(CallFailed) as failed:
        await call.wait_answered(2)
    assert failed.value.status == 407  # a second challenge of the same kind: give up


async def test_busy_is_a_failed_call_with_its_status(bot: UserAgent, pbx: Pbx) -> None:
    call = dial(bot, pbx)
    invite = await pbx.take_invite()
    pbx.reply(invite, 486)
    with pytest.raises(CallFailed) as failed:
        await call.wait_answered(2)
    assert failed.value.status == 486 and call.status == 486
    assert call.ended.result() == "rejected"


async def test_cancel_waits_for_a_provisional_then_goes(bot: UserAgent, pbx: Pbx) -> None:
    call = dial(bot, pbx)
    invite = await pbx.take_invite()
    cancelling = asyncio.create_task(call.cancel())
    heard = await pbx.peer.drain(0.2)  # INVITE retransmissions only
    assert not [m for m in heard if m.startswith(b"CANCEL")]  # no CANCEL before a 1xx (§9.1)
    pbx.reply(invite, 180)
    cancel = await pbx.expect("CANCEL")
    assert (
        cancel.cseq == (invite.cseq[0], "CANCEL") and cancel.top_via.branch == invite.top_via.branch
    )
    pbx.reply(cancel, 200)
    pbx.reply(invite, 487)
    await asyncio.wait_for(cancelling, 2)
    assert call.ended.result() == "cancelled" and call.status == 487


async def test_lost_ack_is_sent_again_for_a_retransmitted_200(bot: UserAgent, pbx: Pbx) -> None:
    call = dial(bot, pbx)
    invite = await pbx.take_invite()
    ok = pbx.answer(invite)
    first = await pbx.expect("ACK")
    pbx.peer.send(bytes(ok), pbx.bot)  # type: ignore[arg-type]
    second = await pbx.expect("ACK")
    assert bytes(first) == bytes(second)
    await call.wait_answered(1)
