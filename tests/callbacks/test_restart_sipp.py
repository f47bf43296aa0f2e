"""A restart mid-schedule dials no one twice, through the real path:
`python -m voicebot run` as a process on a SQLite file, SIPp as the manager's
phone, the callback asked for over HTTP.

The first bot claims the job and rings the manager, who answers; the bot is
SIGKILLed while it whispers, its claim and its attempt left open in the
database. A second bot on the same database does not ring the manager again:
it waits out the dead claimer's lease (`lease_s`), marks the attempt
interrupted and puts the job in the next round, `retry_interval_s` later. The
phone saw one INVITE, the database holds one attempt.

(tests/callbacks/test_scheduler.py proves the same against a scripted dialler
with a clock moved by hand, including the redial one interval later.)
"""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.bot_process import BotProcess, bot_env
from tests.ports import free_port
from tests.sipp_harness.runner import Sipp, SippNotFoundError

pytestmark = [pytest.mark.sipp]

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TOKEN = "cb-restart-token"
ALL_WEEK = {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
LEASE_S = 5
RETRY_S = 3600


def read(database: Path, sql: str) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql)]


async def test_a_bot_killed_mid_attempt_is_not_followed_by_a_second_ring(
    tmp_path: Path,
) -> None:
    try:
        sipp = Sipp(workdir=tmp_path / "sipp")
    except SippNotFoundError as missing:
        pytest.skip(str(missing))
    phone = await sipp.start(SCENARIOS / "pbx_answer_hold.xml", None, timeout_s=45, trace_msg=True)
    await phone.listening()
    http_port = free_port()
    env, _, database = bot_env(
        tmp_path,
        sip__server="127.0.0.1",
        sip__port=str(phone.local_port),
        http__port=str(http_port),
        http__api_token=TOKEN,
        callbacks__enabled="true",
        callbacks__targets=json.dumps(["201"]),
        callbacks__default_region="UA",
        callbacks__timezone="Europe/Kyiv",
        callbacks__working_hours=json.dumps(ALL_WEEK),
        callbacks__first_delay_s="0",
        callbacks__ring_timeout_s="20",
        callbacks__lease_s=str(LEASE_S),
        callbacks__retry_interval_s=str(RETRY_S),
    )
    first, second = BotProcess(env, tmp_path), BotProcess(env, tmp_path)
    try:
        await first.start()
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
            http.post(
                f"http://127.0.0.1:{http_port}/api/v1/callbacks", json={"number": "+380441234567"}
            ) as response,
        ):
            assert response.status == 201, await response.text()
        # The manager answered: the bot whispers the missed number now.
        await first.wait_line("callback.leg_answered", 10)
        [job] = read(database, "SELECT state, claimed_by FROM callback_jobs")
        assert job["state"] == "dialling", job
        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        assert await first.finish(5) == -signal.SIGKILL
        killed_at = time.time()

        await second.start()
        await second.wait_line("callback.recovered", LEASE_S + 15)
        result = await phone.wait()  # its call ends by itself: nobody says BYE
    finally:
        phone.kill()
        await first.kill()
        await second.kill()
    assert result.ok, result.describe()
    invites = [line for line in result.messages_log_text.splitlines() if line.startswith("INVITE ")]
    assert len(invites) == 1, result.messages_log_text
    assert second.count("sip.outgoing_call") == 0, second.output()
    [job] = read(database, "SELECT state, round, reason, due_at FROM callback_jobs")
    assert (job["state"], job["round"], job["reason"]) == ("queued", 2, "interrupted"), job
    assert job["due_at"] >= killed_at + RETRY_S - 60, job
    [attempt] = read(database, "SELECT round, outcome, ended_at FROM callback_attempts")
    assert (attempt["round"], attempt["outcome"]) == (1, "interrupted"), attempt
    assert attempt["ended_at"] is not None
