"""Missed calls the PBX sends to the bot over SIP (issue 9, "SIP" way in):
SIPp plays the PBX, the real app answers or refuses, and the miss lands in
the call log and the callback queue (the dialler is not involved)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.conftest import SCENARIOS, MakeBot, needs_sipp, target
from tests.sipp_harness.runner import Sipp
from voicebot.app import VoicebotApp
from voicebot.callbacks.queue import CallbackJob, JobFilter

pytestmark = [pytest.mark.sipp, needs_sipp]

CALLBACKS: dict[str, Any] = {
    "enabled": True,
    "targets": ["201"],
    "default_region": "UA",
    "timezone": "Europe/Kyiv",
    "first_delay_s": 3600,  # queued, not dialled, while the test looks
}


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


async def test_missed_call_by_uri_is_refused_480_and_queued(make_bot: MakeBot, sipp: Sipp) -> None:
    app = await make_bot(callbacks={**CALLBACKS, "on_missed_call": "refuse"})
    result = await sipp.arun_scenario(
        SCENARIOS / "missed_uri_refused.xml",
        target(app),
        keys={"client_number": "+380501112233", "manager": "202"},
        timeout_s=15,
        trace_msg=True,
    )
    assert result.ok and result.successful_calls == 1, result.describe()
    assert "SIP/2.0 480" in result.messages_log_text
    assert "SIP/2.0 200" not in result.messages_log_text
    [job] = await jobs_of(app, 1)
    assert (job.state, job.client_number) == ("queued", "+380501112233")
    assert app.call_log is not None
    call = await app.call_log.get(job.missed_calls[0].call_id or 0)
    assert call is not None and call.manager == "202"
    # No menu call was started for it.
    assert app.health()["active_calls"] == 0


async def test_a_header_that_is_no_number_is_left_out_and_the_miss_kept(
    make_bot: MakeBot, sipp: Sipp
) -> None:
    """A hostile X-Manager does not cost the miss: it is stored without it."""
    app = await make_bot(callbacks={**CALLBACKS, "on_missed_call": "refuse"})
    result = await sipp.arun_scenario(
        SCENARIOS / "missed_uri_refused.xml",
        target(app),
        keys={"client_number": "+380501112233", "manager": "<sip:x@evil>;a=1"},
        timeout_s=15,
        trace_msg=True,
    )
    assert result.ok and result.successful_calls == 1, result.describe()
    [job] = await jobs_of(app, 1)
    assert (job.state, job.client_number) == ("queued", "+380501112233")
    assert app.call_log is not None
    call = await app.call_log.get(job.missed_calls[0].call_id or 0)
    assert call is not None and call.client_number == "+380501112233"
    assert call.manager is None
