"""A missed call through a real Asterisk 22 and the recipe, called back: the
whole of issue 9's manager-first flow with no HTTP request to start it.

A client (SIPp UAC) calls the manager's extension 201 through the trunk; the
manager's phone (SIPp UAS) is busy (486), so the recipe's `voicebot-inbound`
sends the still unanswered call to `voicebot-missed`, which dials the bot
with `X-Call-Reason: missed`, `X-Client-Number`, `X-Call-ID` and `X-Manager`
set by the recipe's pre-dial handler. The bot is registered as the recipe's
`voicebot` extension (register mode). It records the miss, says "we will
call you back" and hangs up; the scheduler (first_delay_s = 0, inside
working hours) claims the job at once and the dialler rings 201 through
`voicebot-dialout`; the manager answers and keys 1 (RFC 4733), the bot
REFERs the manager to the client's number, Asterisk blind-transfers the
manager through the recipe's `_+X.` route and the trunk to the client's
phone (a second SIPp, UAS), which answers; NOTIFY sipfrag 200 ends the
attempt, and the job is `completed` with a signed `callback.completed`
webhook at a real aiohttp receiver.

The dialplan is config/pbx/asterisk.conf included as shipped; the bot's
endpoint is config/pbx/asterisk_pjsip.conf with the bot's address
substituted and edited for register mode as its comments say. Hosts on
loopback as in test_asterisk_recipe.py: Asterisk and the manager's phone on
127.0.0.1, the client (both of its SIPp sides) on 127.0.0.2, the bot on
127.0.0.3.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.callbacks.callbacks_testkit import eventually
from tests.pbx.asterisk import Asterisk, asterisk_prefix
from tests.pbx.test_asterisk_callback import ALL_WEEK, CB_SCENARIOS, PASSWORD, pjsip_conf
from tests.pbx.test_asterisk_recipe import (
    BOT_HOST,
    CLIENT_HOST,
    MANAGER,
    PBX_HOST,
    RECIPE,
    SCENARIOS,
    sipp_at,
)
from tests.ports import free_port, rtp_window
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import can_play_pcap
from tests.webhooks.webhooks_testkit import SECRET, Receiver
from voicebot.app import VoicebotApp
from voicebot.settings import Settings

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.asterisk,
    pytest.mark.skipif(not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root)"),
]

CLIENT_NUMBER = "+380441234567"
TOKEN = "cb-missed-asterisk"


@pytest.fixture
async def asterisk(tmp_path: Path) -> AsyncIterator[Asterisk]:
    pbx = Asterisk(asterisk_prefix(), tmp_path / "asterisk")
    yield pbx
    await pbx.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver([SECRET])
    await hooks.start()
    yield hooks
    await hooks.stop()


def bot_settings(tmp_path: Path, sip_port: int, bot_port: int, hooks: str) -> Settings:
    rtp_min, rtp_max = rtp_window(calls=4, host=BOT_HOST)
    return Settings(
        sip={
            "mode": "register",
            "username": "voicebot",
            "password": PASSWORD,
            "server": PBX_HOST,
            "port": sip_port,
            "bind_host": BOT_HOST,
            "bind_port": bot_port,
            "rtp_port_min": rtp_min,
            "rtp_port_max": rtp_max,
            "allowed_peers": [f"{PBX_HOST}/32"],
        },
        storage={"database": tmp_path / "voicebot.db"},
        http={"host": "127.0.0.1", "port": 0, "api_token": TOKEN},
        webhooks={"endpoints": [{"url": hooks, "secret": SECRET, "events": ["*"]}]},
        callbacks={
            "enabled": True,
            "targets": [MANAGER],
            "default_region": "UA",
            "timezone": "Europe/Kyiv",
            "working_hours": ALL_WEEK,
            "first_delay_s": 0,
            "ring_timeout_s": 10,
            "on_missed_call": "answer",
        },
    )


async def test_a_missed_call_through_the_recipe_is_called_back_and_completed(
    asterisk: Asterisk, receiver: Receiver, tmp_path: Path
) -> None:
    sip_port, manager_port = free_port(host=PBX_HOST), free_port(host=PBX_HOST)
    client_port, bot_port = free_port(host=CLIENT_HOST), free_port(host=BOT_HOST)
    asterisk.write_config(
        {
            "pjsip.conf": pjsip_conf(sip_port, manager_port, client_port, bot_port, "register"),
            "extensions.conf": f'[general]\nstatic=yes\n\n#include "{RECIPE}"\n',
        },
        rtp_ports=rtp_window(calls=8, host=PBX_HOST),
    )
    await asterisk.start()
    pcap = write_dtmf_pcap(tmp_path / "one.pcap", "1", lead_in_ms=1000, with_audio=True)
    manager = await sipp_at(PBX_HOST, tmp_path / "manager").start(
        SCENARIOS / "manager_busy_then_keys.xml",
        None,
        local_port=manager_port,
        calls=2,
        keys={"manager": MANAGER, "pcap": pcap},
        timeout_s=60,
        trace_msg=True,
    )
    client_phone = await sipp_at(CLIENT_HOST, tmp_path / "client-phone").start(
        CB_SCENARIOS / "client_uas_hangup.xml",
        None,
        local_port=client_port,
        timeout_s=60,
        trace_msg=True,
    )
    await manager.listening()
    await client_phone.listening()
    app = VoicebotApp(bot_settings(tmp_path, sip_port, bot_port, receiver.url))
    await app.start()
    try:

        async def registered() -> bool:
            assert app.user_agent is not None and app.user_agent.registration is not None
            return app.user_agent.registration.state == "registered"

        await eventually(registered, timeout=10)
        # the client calls the company: the manager is busy, the recipe hands
        # the call to the bot, which promises a callback and hangs up
        caller = await sipp_at(CLIENT_HOST, tmp_path / "client").arun_scenario(
            SCENARIOS / "client_missed_uac.xml",
            f"{PBX_HOST}:{sip_port}",
            keys={"service": MANAGER, "client_number": CLIENT_NUMBER},
            timeout_s=30,
            trace_msg=True,
        )
        assert caller.ok, caller.describe() + asterisk.log_tail()
        async with aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{app.http_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http:

            async def jobs() -> list[dict[str, Any]]:
                async with http.get("/api/v1/callbacks") as r:
                    assert r.status == 200, await r.text()
                    return list((await r.json())["callbacks"])

            async def settled() -> bool:
                now = await jobs()  # one read: an attempt is logged while it is dialling
                return len(now) == 1 and (
                    now[0]["state"] not in ("queued", "dialling")
                    or (now[0]["state"] == "queued" and bool(now[0]["attempt_log"]))
                )

            await eventually(settled, timeout=40)
            [listed] = await jobs()
            async with http.get(f"/api/v1/callbacks/{listed['id']}") as r:
                assert r.status == 200, await r.text()
                job = await r.json()
            [missed] = job["missed_calls"]
            async with http.get(f"/api/v1/calls/{missed['call_id']}") as r:
                assert r.status == 200, await r.text()
                call = await r.json()

            async def webhook_arrived() -> bool:
                return any(
                    json.loads(r.body)["type"] == "callback.completed"
                    for r in receiver.received
                    if r.verified
                )

            await eventually(webhook_arrived, timeout=10)
        answered = await client_phone.wait()
        assert answered.ok, answered.describe() + asterisk.log_tail()
        phone = await manager.wait()
        assert phone.ok, phone.describe() + asterisk.log_tail()
    finally:
        manager.kill()
        client_phone.kill()
        await app.stop()

    # the job: the client's number from the recipe's X-Client-Number, completed
    assert job["state"] == "completed", (job, asterisk.log_tail())
    # (a missed-call INVITE is filed in the call log like a PBX event, and the
    # call log's intake queues it: source "pbx")
    assert job["client_number"] == CLIENT_NUMBER and job["source"] == "pbx", job
    [attempt] = job["attempt_log"]
    assert (attempt["outcome"], attempt["target"], attempt["sip_status"]) == (
        "completed",
        MANAGER,
        200,
    )
    # the missed call row: X-Call-ID is the client's channel's ${UNIQUEID},
    # X-Manager the extension that was busy
    assert re.fullmatch(r"\d+\.\d+", missed["pbx_call_id"] or ""), missed
    assert call["pbx_call_id"] == missed["pbx_call_id"], call
    assert (call["direction"], call["status"], call["client_number"], call["manager"]) == (
        "inbound",
        "missed",
        CLIENT_NUMBER,
        MANAGER,
    ), call
    # Asterisk rang the manager twice: the client's call (busy) and the bot's
    invites = re.findall(r"^INVITE sip:\S+ SIP/2\.0$", phone.messages_log_text, re.MULTILINE)
    assert len(invites) == 2, phone.messages_log_text
    # the manager was transferred to the client through the recipe's route
    assert f"INVITE sip:{CLIENT_NUMBER}@" in answered.messages_log_text
    hooks = [json.loads(r.body) for r in receiver.received if r.verified]
    types = [h["type"] for h in hooks]
    assert "call.missed" in types and "callback.scheduled" in types, types
    [done] = [h for h in hooks if h["type"] == "callback.completed"]
    assert done["data"]["client_number"] == CLIENT_NUMBER
    assert done["data"]["pbx_call_ids"] == [missed["pbx_call_id"]], done
