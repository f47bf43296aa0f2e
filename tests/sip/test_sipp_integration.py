"""The user agent against SIPp over loopback (DESIGN.md §5: real peers, real protocol).

Every response SIPp accepts came back to the port SIPp sent from, so each
test also proves RFC 3261 §18.2.2 / RFC 3581 response routing (j).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

import pytest
from sipp_runner import Sipp, free_udp_port

from voicebot.settings import SipSettings
from voicebot.sip.call import CallCancelled, IncomingCall
from voicebot.sip.registration import RegistrationState
from voicebot.sip.user_agent import UserAgent

pytestmark = pytest.mark.sipp


def peer_settings(**overrides) -> SipSettings:
    base = {"mode": "peer", "bind_host": "127.0.0.1", "bind_port": 0}
    return SipSettings(**{**base, **overrides})


def register_settings(port: int, **overrides) -> SipSettings:
    base = {
        "mode": "register",
        "server": "127.0.0.1",
        "port": port,
        "username": "alice",
        "password": "s3cret",
        "bind_host": "127.0.0.1",
        "bind_port": 0,
        "register_expires": 300,
    }
    return SipSettings(**{**base, **overrides})


async def never_called(call: IncomingCall) -> None:
    raise AssertionError("no call expected")


async def wait_for_state(ua: UserAgent, state: RegistrationState, timeout: float) -> None:
    assert ua.registration is not None
    deadline = time.monotonic() + timeout
    while ua.registration.state != state:
        assert time.monotonic() < deadline, (ua.registration.state, ua.registration.last_error)
        await asyncio.sleep(0.05)


async def test_registers_answering_401_with_qop_digest(sipp: Sipp) -> None:
    port = free_udp_port()
    await sipp.start("registrar_401.xml", port=port)
    await asyncio.sleep(0.3)
    ua = UserAgent(register_settings(port), never_called)
    await ua.start()
    try:
        result = await sipp.wait()
        result.assert_passed()
        await wait_for_state(ua, RegistrationState.REGISTERED, 3)
        assert ua.registration is not None
        # Contact ;expires=120 wins over the Expires: 3600 header (RFC 3261 §10.2.4)
        assert ua.registration.granted_expires == 120
        assert ua.registration.expires_at is not None
    finally:
        ua.registration.stop = _no_unregister(ua)  # type: ignore[union-attr,method-assign]
        await ua.stop()


def _no_unregister(ua: UserAgent):
    # SIPp has exited; skip the Expires: 0 round so stop() stays fast.
    async def stop() -> None:
        return None

    return stop


async def test_registers_answering_407_with_proxy_authorization(sipp: Sipp) -> None:
    port = free_udp_port()
    await sipp.start("registrar_407.xml", port=port)
    await asyncio.sleep(0.3)
    ua = UserAgent(register_settings(port), never_called)
    await ua.start()
    try:
        result = await sipp.wait()
        result.assert_passed()
        await wait_for_state(ua, RegistrationState.REGISTERED, 3)
        assert ua.registration is not None and ua.registration.granted_expires == 90
    finally:
        ua.registration.stop = _no_unregister(ua)  # type: ignore[union-attr,method-assign]
        await ua.stop()
    header = re.search(r"PROXY-AUTH (.*)", result.logs)
    assert header, result.logs
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1)))
    assert fields["realm"] == "proxy.test" and fields["opaque"] == "op1"
    assert fields["qop"] == "auth" and fields["nc"] == "00000001"

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5("alice:proxy.test:s3cret")
    ha2 = md5(f"REGISTER:{fields['uri']}")
    expected = md5(f"{ha1}:77aa88bb:00000001:{fields['cnonce']}:auth:{ha2}")
    assert fields["response"] == expected


async def test_start_does_not_wait_for_a_silent_registrar(sipp: Sipp) -> None:
    port = free_udp_port()
    ua = UserAgent(register_settings(port), never_called)
    began = time.monotonic()
    await ua.start()
    assert time.monotonic() - began < 0.5
    try:
        await asyncio.sleep(1.0)
        assert ua.registration is not None
        assert ua.registration.state == RegistrationState.REGISTERING
        await sipp.start("registrar_401.xml", port=port)  # the PBX comes up
        (await sipp.wait()).assert_passed()
        await wait_for_state(ua, RegistrationState.REGISTERED, 3)
    finally:
        ua.registration.stop = _no_unregister(ua)  # type: ignore[union-attr,method-assign]
        await ua.stop()


@pytest.mark.parametrize(
    ("scenario", "allowed_peers"),
    [
        pytest.param("options.xml", None, id="options_answered_with_allow"),
        pytest.param(
            "invite_forbidden.xml", ["10.9.9.9"], id="invite_from_a_peer_not_allowed_gets_403"
        ),
        pytest.param("invite_g729.xml", None, id="g729_only_offer_gets_488"),
    ],
)
async def test_answered_without_the_app(
    sipp: Sipp, scenario: str, allowed_peers: list[str] | None
) -> None:
    """The UA answers these itself (the scenario checks the status and headers);
    the app is never called."""
    overrides = {"allowed_peers": allowed_peers} if allowed_peers is not None else {}
    ua = UserAgent(peer_settings(**overrides), never_called)
    await ua.start()
    try:
        await sipp.start(scenario, port=free_udp_port(), remote=ua.local_address)
        (await sipp.wait()).assert_passed()
    finally:
        await ua.stop()


async def test_cancel_before_answer_gets_487_and_is_never_answered(sipp: Sipp) -> None:
    outcome: dict[str, object] = {}

    async def slow_app(call: IncomingCall) -> None:
        await asyncio.sleep(2.0)  # the caller gives up meanwhile
        try:
            await call.answer("127.0.0.1", 30000)
        except CallCancelled:
            outcome["answer"] = "CallCancelled"
        outcome["ended"] = call.ended.result()

    ua = UserAgent(peer_settings(), slow_app)
    await ua.start()
    try:
        await sipp.start("invite_cancel.xml", port=free_udp_port(), remote=ua.local_address)
        (await sipp.wait()).assert_passed()
        for _ in range(60):
            if "ended" in outcome:
                break
            await asyncio.sleep(0.05)
        assert outcome == {"answer": "CallCancelled", "ended": "cancelled"}
    finally:
        await ua.stop()


async def test_call_with_pbx_headers_answered_then_remote_bye(sipp: Sipp) -> None:
    seen: dict[str, object] = {}

    async def app(call: IncomingCall) -> None:
        seen.update(
            call_id=call.call_id,
            from_user=call.from_user,
            from_display=call.from_display,
            x_call_id=call.header("x-call-id"),
            client=call.header("X-Client-Number"),
            manager=call.header("X-MANAGER"),
            supported=call.header("Supported"),
            codec=(call.media.codec_name, call.media.payload_type, call.media.telephone_event_pt),
            remote=call.media.remote_rtp,
        )
        await call.answer("127.0.0.1", 30002)
        seen["answered"] = True
        seen["ended"] = await asyncio.wait_for(call.ended, 5)

    ua = UserAgent(peer_settings(), app)
    await ua.start()
    try:
        await sipp.start("call_bye.xml", port=free_udp_port(), remote=ua.local_address)
        (await sipp.wait()).assert_passed()
        for _ in range(40):
            if "ended" in seen:
                break
            await asyncio.sleep(0.05)
    finally:
        await ua.stop()
    assert seen["x_call_id"] == "pbx-1700000000.42"
    assert seen["client"] == "+380501234567"
    assert seen["manager"] == "201"
    assert seen["supported"] == ""
    assert seen["from_user"] == "201" and seen["from_display"] == "Manager Ann"
    assert seen["codec"] == ("PCMU", 0, 101)
    assert seen["remote"] == ("127.0.0.1", 40000)
    assert seen["answered"] is True and seen["ended"] == "remote_bye"


async def test_info_digits_delivered_and_answered_200(sipp: Sipp) -> None:
    keys: list[str] = []
    done = asyncio.Event()

    async def app(call: IncomingCall) -> None:
        call.on_info_key = keys.append
        await call.answer("127.0.0.1", 30004)
        await call.ended
        done.set()

    ua = UserAgent(peer_settings(), app)
    await ua.start()
    try:
        await sipp.start("call_info.xml", port=free_udp_port(), remote=ua.local_address)
        (await sipp.wait()).assert_passed()
        await asyncio.wait_for(done.wait(), 3)
    finally:
        await ua.stop()
    assert keys == ["5", "#"]
