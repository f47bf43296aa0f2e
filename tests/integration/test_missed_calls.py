"""Missed calls the PBX sends to the bot over SIP (issue 9, "SIP" way in):
SIPp plays the PBX, the real app answers or refuses, and the miss lands in
the call log and the callback queue (the dialler is not involved)."""

from __future__ import annotations

import asyncio

import pytest

from tests.callbacks.callbacks_testkit import callbacks_section
from tests.integration.conftest import SCENARIOS, MakeBot, needs_sipp, target
from tests.sipp_harness.runner import Sipp, SippResult
from voicebot.app import VoicebotApp
from voicebot.callbacks.queue import CallbackJob, JobFilter
from voicebot.journal.calls import CallRecord

pytestmark = [pytest.mark.sipp, needs_sipp]

CALLBACKS = callbacks_section(first_delay_s=3600)  # queued, not dialled, while the test looks


async def jobs_of(app: VoicebotApp, count: int, timeout: float = 5.0) -> list[CallbackJob]:
    assert app.callback_queue is not None
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        jobs, _ = await app.callback_queue.list(JobFilter())
        if len(jobs) >= count or asyncio.get_running_loop().time() > deadline:
            return jobs
        await asyncio.sleep(0.05)


async def test_missed_call_is_answered_promised_and_queued(make_bot: MakeBot, sipp: Sipp) -> None:
    app = await make_bot(callbacks=CALLBACKS)
    started = asyncio.get_running_loop().time()
    result = await sipp.arun_scenario(
        SCENARIOS / "missed_answer.xml",
        target(app),
        keys={"client_number": "0441234567", "pbx_call_id": "pbx-missed-1", "manager": "201"},
        timeout_s=20,
        trace_msg=True,
    )
    assert result.ok and result.successful_calls == 1, result.describe()
    # The bot hung up after its prompt (about 4 s of speech), not at once.
    assert asyncio.get_running_loop().time() - started > 3.0
    [job] = await jobs_of(app, 1)
    assert (job.state, job.client_number, job.source) == ("queued", "+380441234567", "pbx")
    assert [m.pbx_call_id for m in job.missed_calls] == ["pbx-missed-1"]
    assert app.call_log is not None
    call = await app.call_log.get(job.missed_calls[0].call_id or 0)
    assert call is not None and (call.status, call.direction) == ("missed", "inbound")
    assert call.client_number == "0441234567"
    assert call.manager == "201"  # X-Manager: the extension that did not answer


async def refused_miss(
    make_bot: MakeBot, sipp: Sipp, manager: str
) -> tuple[VoicebotApp, SippResult, CallRecord]:
    """+380501112233 calls the bot's missed-call URI (X-Manager: `manager`) and is
    refused: the app, SIPp's run, and the miss the queued job holds."""
    app = await make_bot(callbacks={**CALLBACKS, "on_missed_call": "refuse"})
    result = await sipp.arun_scenario(
        SCENARIOS / "missed_uri_refused.xml",
        target(app),
        keys={"client_number": "+380501112233", "manager": manager},
        timeout_s=15,
        trace_msg=True,
    )
    assert result.ok and result.successful_calls == 1, result.describe()
    [job] = await jobs_of(app, 1)
    assert (job.state, job.client_number) == ("queued", "+380501112233")
    assert app.call_log is not None
    call = await app.call_log.get(job.missed_calls[0].call_id or 0)
    assert call is not None
    return app, result, call


async def test_missed_call_by_uri_is_refused_480_and_queued(make_bot: MakeBot, sipp: Sipp) -> None:
    app, result, call = await refused_miss(make_bot, sipp, manager="202")
    assert "SIP/2.0 480" in result.messages_log_text
    assert "SIP/2.0 200" not in result.messages_log_text
    assert call.manager == "202"
    # No menu call was started for it.
    assert app.health()["active_calls"] == 0


async def test_a_header_that_is_no_number_is_left_out_and_the_miss_kept(
    make_bot: MakeBot, sipp: Sipp
) -> None:
    """A hostile X-Manager does not cost the miss: it is stored without it."""
    _, _, call = await refused_miss(make_bot, sipp, manager="<sip:x@evil>;a=1")
    assert call.client_number == "+380501112233"
    assert call.manager is None
