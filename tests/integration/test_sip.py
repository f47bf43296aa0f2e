"""SIP-level behaviour of the real app: registration (401 / 407 / registrar
restart) with /healthz, peers not allowed, codecs not offered, OPTIONS.

The SIPp scenarios of tests/sip/scenarios are reused by path; the registrar
that grants only 2 s is a copy in ./scenarios.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from tests.integration.conftest import (
    SCENARIOS,
    SIP_SCENARIOS,
    MakeBot,
    db_rows,
    needs_sipp,
    target,
)
from tests.polling import until
from tests.ports import free_port
from tests.sipp_harness.runner import Sipp, SippRun
from voicebot.app import VoicebotApp
from voicebot.sip import registration as registration_module

pytestmark = [pytest.mark.sipp, needs_sipp]


@pytest.fixture(autouse=True)
def quick_unregister(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SIPp registrars exit after their 200, so the bot's un-REGISTER at stop
    goes unanswered: bound it at 0.3 s instead of 2 s to keep teardown short."""
    monkeypatch.setattr(registration_module, "UNREGISTER_TIMEOUT", 0.3)


def register_mode(port: int) -> dict[str, Any]:
    return {
        "mode": "register",
        "server": "127.0.0.1",
        "port": port,
        "username": "alice",
        "password": "s3cret",
        "register_expires": 30,
    }


async def registrar(sipp: Sipp, scenario: str, port: int, timeout_s: float = 15) -> SippRun:
    """A SIPp registrar on `port`, listening when this returns."""
    run = await sipp.start(scenario, None, local_port=port, timeout_s=timeout_s, trace_msg=True)
    await run.listening()
    return run


async def wait_registered(app: VoicebotApp, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        health = app.health()
        registration = health["sip"].get("registration") or {}
        if registration.get("state") == "registered":
            return health
        if time.monotonic() > deadline:
            raise AssertionError(f"not registered within {timeout}s: {health}")
        await asyncio.sleep(0.05)


async def get_healthz(app: VoicebotApp) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{app.http_port}/healthz") as response,
    ):
        return response.status, await response.json()


async def test_registers_with_401_and_again_after_registrar_restart(
    make_bot: MakeBot, sipp: Sipp
) -> None:
    port = free_port()
    first = await registrar(sipp, str(SCENARIOS / "registrar_401_short.xml"), port)
    app = await make_bot(sip=register_mode(port))

    first_result = await first.wait()
    assert first_result.ok, first_result.describe()
    health = await wait_registered(app, timeout=5)
    assert health["ok"] is True
    assert health["sip"]["registration"]["registrar"] == f"127.0.0.1:{port}"
    assert app.user_agent is not None and app.user_agent.registration is not None
    assert app.user_agent.registration.granted_expires == 2
    status, body = await get_healthz(app)
    assert status == 200, body
    assert body["ok"] is True and body["sip"]["mode"] == "register"
    assert body["sip"]["registration"]["state"] == "registered"
    assert body["sip"]["registration"]["expires_at"]

    # The registrar is gone (SIPp exited); the bot's refresh at 0.7 x 2 s goes
    # unanswered. A fresh registrar on the same port later must get it back.
    await asyncio.sleep(2.5)
    second = await registrar(sipp, str(SIP_SCENARIOS / "registrar_401.xml"), port, timeout_s=20)
    second_result = await second.wait()
    assert second_result.ok and second_result.successful_calls == 1, second_result.describe()
    assert "Authorization: Digest" in second_result.messages_log_text
    await wait_registered(app, timeout=5)
    # the grant of the second registrar (Contact ;expires=120), not the first's 2 s
    registration = app.user_agent.registration
    await until(lambda: registration.granted_expires == 120, 5, what=app.health)
    status, body = await get_healthz(app)
    assert status == 200 and body["sip"]["registration"]["state"] == "registered", body


async def test_registers_through_a_407_challenge(make_bot: MakeBot, sipp: Sipp) -> None:
    port = free_port()
    run = await registrar(sipp, str(SIP_SCENARIOS / "registrar_407.xml"), port)
    app = await make_bot(sip=register_mode(port))
    result = await run.wait()
    assert result.ok, result.describe()
    assert "Proxy-Authorization: Digest" in result.messages_log_text
    await wait_registered(app, timeout=5)
    assert app.user_agent is not None and app.user_agent.registration is not None
    assert app.user_agent.registration.granted_expires == 90
    status, body = await get_healthz(app)
    assert status == 200 and body["sip"]["registration"]["state"] == "registered", body


async def test_peer_not_allowed_gets_403_and_no_row(make_bot: MakeBot, sipp: Sipp) -> None:
    app = await make_bot(sip={"allowed_peers": ["10.9.9.9/32"]})
    result = await sipp.arun_scenario(
        SIP_SCENARIOS / "invite_forbidden.xml", target(app), timeout_s=10, trace_msg=True
    )
    assert result.ok and result.successful_calls == 1, result.describe()
    assert "SIP/2.0 403" in result.messages_log_text
    await asyncio.sleep(0.2)
    assert db_rows(app) == []
    assert app.health()["active_calls"] == 0


async def test_g729_only_offer_488_and_options_200(bot: VoicebotApp, sipp: Sipp) -> None:
    g729, options = await asyncio.gather(
        sipp.arun_scenario(
            SIP_SCENARIOS / "invite_g729.xml", target(bot), timeout_s=10, trace_msg=True
        ),
        sipp.arun_scenario(SIP_SCENARIOS / "options.xml", target(bot), timeout_s=10),
    )
    assert g729.ok and g729.successful_calls == 1, g729.describe()
    assert "SIP/2.0 488" in g729.messages_log_text
    assert options.ok and options.successful_calls == 1, options.describe()
    await asyncio.sleep(0.2)
    assert db_rows(bot) == []
    status, body = await get_healthz(bot)
    assert status == 200 and body == {
        "ok": True,
        "sip": {"mode": "peer"},
        "active_calls": 0,
        "event_loop": "asyncio",
    }
