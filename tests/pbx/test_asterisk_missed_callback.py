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
loopback as tests/pbx/recipe.py says: Asterisk and the manager's phone on
127.0.0.1, the client (both of its SIPp sides) on 127.0.0.2, the bot on
127.0.0.3.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.callbacks.callbacks_testkit import api_session
from tests.pbx import recipe
from tests.pbx.asterisk import Asterisk
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import can_play_pcap
from tests.webhooks.webhooks_testkit import SECRET, Receiver
from voicebot.app import VoicebotApp

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.asterisk,
    pytest.mark.skipif(not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root)"),
]


async def test_a_missed_call_through_the_recipe_is_called_back_and_completed(
    asterisk: Asterisk, ports: recipe.Ports, receiver: Receiver, tmp_path: Path
) -> None:
    await recipe.start_asterisk(asterisk, ports, "register")
    pcap = write_dtmf_pcap(tmp_path / "one.pcap", "1", lead_in_ms=1000, with_audio=True)
    manager = await recipe.manager_phone(
        tmp_path / "manager", "manager_busy_then_keys.xml", ports, pcap, calls=2
    )
    answering = await recipe.client_phone(tmp_path / "client-phone", ports)
    hooks = [{"url": receiver.url, "secret": SECRET, "events": ["*"]}]
    app = VoicebotApp(
        recipe.callback_bot(tmp_path, ports, "register", hooks, on_missed_call="answer")
    )
    await app.start()
    try:
        await recipe.until_registered(app)
        # the client calls the company: the manager is busy, the recipe hands
        # the call to the bot, which promises a callback and hangs up
        caller = await recipe.sipp_at(recipe.CLIENT_HOST, tmp_path / "client").arun_scenario(
            recipe.SCENARIOS / "client_missed_uac.xml",
            f"{recipe.PBX_HOST}:{ports.sip}",
            keys={"service": recipe.MANAGER, "client_number": recipe.CLIENT_NUMBER},
            timeout_s=30,
            trace_msg=True,
        )
        assert caller.ok, caller.describe() + asterisk.log_tail()
        async with api_session(app) as http:
            listed = await recipe.settled_job(http)
            async with http.get(f"/api/v1/callbacks/{listed['id']}") as r:
                assert r.status == 200, await r.text()
                job = await r.json()
            [missed] = job["missed_calls"]
            async with http.get(f"/api/v1/calls/{missed['call_id']}") as r:
                assert r.status == 200, await r.text()
                call = await r.json()
            await receiver.wait_for_event("callback.completed", timeout=10)
        answered = await answering.wait()
        assert answered.ok, answered.describe() + asterisk.log_tail()
        phone = await manager.wait()
        assert phone.ok, phone.describe() + asterisk.log_tail()
    finally:
        manager.kill()
        answering.kill()
        await app.stop()

    # the job: the client's number from the recipe's X-Client-Number, completed
    assert job["state"] == "completed", (job, asterisk.log_tail())
    # (a missed-call INVITE is filed in the call log like a PBX event, and the
    # call log's intake queues it: source "pbx")
    assert job["client_number"] == recipe.CLIENT_NUMBER and job["source"] == "pbx", job
    [attempt] = job["attempt_log"]
    assert (attempt["outcome"], attempt["target"], attempt["sip_status"]) == (
        "completed",
        recipe.MANAGER,
        200,
    )
    # the missed call row: X-Call-ID is the client's channel's ${UNIQUEID},
    # X-Manager the extension that was busy
    assert re.fullmatch(r"\d+\.\d+", missed["pbx_call_id"] or ""), missed
    assert call["pbx_call_id"] == missed["pbx_call_id"], call
    assert (call["direction"], call["status"], call["client_number"], call["manager"]) == (
        "inbound",
        "missed",
        recipe.CLIENT_NUMBER,
        recipe.MANAGER,
    ), call
    # Asterisk rang the manager twice: the client's call (busy) and the bot's
    invites = re.findall(r"^INVITE sip:\S+ SIP/2\.0$", phone.messages_log_text, re.MULTILINE)
    assert len(invites) == 2, phone.messages_log_text
    # the manager was transferred to the client through the recipe's route
    assert f"INVITE sip:{recipe.CLIENT_NUMBER}@" in answered.messages_log_text
    assert receiver.events("call.missed") and receiver.events("callback.scheduled"), [
        r.body for r in receiver.received
    ]
    [done] = receiver.events("callback.completed")
    assert done["data"]["client_number"] == recipe.CLIENT_NUMBER
    assert done["data"]["pbx_call_ids"] == [missed["pbx_call_id"]], done
