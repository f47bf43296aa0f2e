"""The user agent against SIPp over loopback (DESIGN.md §5: real peers, real protocol).

Every response SIPp accepts came back to the port SIPp sent from, so each
test also proves RFC 3261 §18.2.2 / RFC 3581 response routing (j).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.polling import until
from tests.ports import free_port
from tests.sip.handoff import each_call
from tests.sipp_harness.runner import Sipp, SippResult, SippRun
from voicebot.settings import SipSettings
from voicebot.sip.call import CallCancelled, IncomingCall
from voicebot.sip.registration import RegistrationState
from voicebot.sip.user_agent import UserAgent

pytestmark = pytest.mark.sipp

SCENARIOS = Path(__file__).resolve().parent / "scenarios"


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
    registration = ua.registration
    assert registration is not None
    await until(
        lambda: registration.state == state,
        timeout,
        what=lambda: (registration.state, registration.last_error),
    )


async def registrar(sipp: Sipp, scenario: str, port: int) -> SippRun:
    """A SIPp registrar on `port`, listening when this returns."""
    run = await sipp.start(SCENARIOS / scenario, None, local_port=port, timeout_s=20)
    await run.listening()
    return run


@contextlib.asynccontextmanager
async def peer_ua(
    app: Callable[[IncomingCall], Awaitable[None]] = never_called, **overrides: Any
) -> AsyncIterator[UserAgent]:
    """A started peer-mode UserAgent on a port the OS chose; stopped on the way out."""
    ua = UserAgent(peer_settings(**overrides), each_call(app))
    await ua.start()
    try:
        yield ua
    finally:
        await ua.stop()


async def dial(sipp: Sipp, scenario: str, ua: UserAgent) -> SippResult:
    """Run a SIPp UAC scenario against `ua` to the end."""
    host, port = ua.local_address
    return await sipp.arun_scenario(SCENARIOS / scenario, f"{host}:{port}", timeout_s=20)


def _no_unregister(ua: UserAgent):
    # SIPp has exited; skip the Expires: 0 round so stop() stays fast.
    async def stop() -> None:
        return None

    return stop


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


@pytest.mark.parametrize(
    ("scenario", "realm", "nonce", "opaque", "granted"),
    [
        # Contact ;expires=120 wins over the Expires: 3600 header (RFC 3261 §10.2.4)
        pytest.param("registrar_401.xml", "voicebot.test", "4f3c2b1a0001", None, 120, id="401"),
        pytest.param("registrar_407.xml", "proxy.test", "77aa88bb", "op1", 90, id="407"),
    ],
)
async def test_registers_answering_the_challenge_with_a_qop_digest(
    sipp: Sipp, scenario: str, realm: str, nonce: str, opaque: str | None, granted: int
) -> None:
    """401 is answered with Authorization, 407 with Proxy-Authorization (RFC 3261
    §22.2/§22.3); both carry an RFC 2617 qop=auth digest SIPp logged for us."""
    port = free_port()
    run = await registrar(sipp, scenario, port)
    ua = UserAgent(register_settings(port), each_call(never_called))
    await ua.start()
    try:
        result = await run.wait()
        assert result.ok, result.describe()
        await wait_for_state(ua, RegistrationState.REGISTERED, 3)
        assert ua.registration is not None
        assert ua.registration.granted_expires == granted
        assert ua.registration.expires_at is not None
    finally:
        ua.registration.stop = _no_unregister(ua)  # type: ignore[union-attr,method-assign]
        await ua.stop()
    header = re.search(r"AUTH (.*)", result.logs_text)
    assert header, result.describe()
    fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header.group(1)))
    assert fields["realm"] == realm and fields["nonce"] == nonce
    assert fields.get("opaque") == opaque
    assert fields["qop"] == "auth" and fields["nc"] == "00000001"
    ha1 = md5(f"alice:{realm}:s3cret")
    ha2 = md5(f"REGISTER:{fields['uri']}")
    expected = md5(f"{ha1}:{nonce}:00000001:{fields['cnonce']}:auth:{ha2}")
    assert fields["response"] == expected


async def test_start_does_not_wait_for_a_silent_registrar(sipp: Sipp) -> None:
    port = free_port()
    ua = UserAgent(register_settings(port), each_call(never_called))
    began = time.monotonic()
    await ua.start()
    assert time.monotonic() - began < 0.5
    try:
        await asyncio.sleep(1.0)
        assert ua.registration is not None
        assert ua.registration.state == RegistrationState.REGISTERING
        run = await registrar(sipp, "registrar_401.xml", port)  # the PBX comes up
        result = await run.wait()
        assert result.ok, result.describe()
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
    async with peer_ua(**overrides) as ua:
        result = await dial(sipp, scenario, ua)
        assert result.ok, result.describe()


async def test_cancel_before_answer_gets_487_and_is_never_answered(sipp: Sipp) -> None:
    outcome: dict[str, object] = {}

    async def slow_app(call: IncomingCall) -> None:
        await asyncio.sleep(2.0)  # the caller gives up meanwhile
        try:
            await call.answer("127.0.0.1", 30000)
        except CallCancelled:
            outcome["answer"] = "CallCancelled"
        outcome["ended"] = call.ended.result()

    async with peer_ua(slow_app) as ua:
        result = await dial(sipp, "invite_cancel.xml", ua)
        assert result.ok, result.describe()
        await until(lambda: "ended" in outcome, 3, what=lambda: outcome)
        assert outcome == {"answer": "CallCancelled", "ended": "cancelled"}


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

    async with peer_ua(app) as ua:
        result = await dial(sipp, "call_bye.xml", ua)
        assert result.ok, result.describe()
        await until(lambda: "ended" in seen, 2, what=lambda: seen)
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

    async with peer_ua(app) as ua:
        result = await dial(sipp, "call_info.xml", ua)
        assert result.ok, result.describe()
        await asyncio.wait_for(done.wait(), 3)
    assert keys == ["5", "#"]
