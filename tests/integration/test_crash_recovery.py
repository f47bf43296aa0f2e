"""`python -m voicebot run` as a real process: SIGKILL mid-call leaves an
`in_progress` row that the next start marks incomplete / interrupted; SIGTERM
stops the bot cleanly with exit status 0."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import pytest

from tests.integration.bot_process import BotProcess, bot_env
from tests.integration.conftest import needs_raw, needs_sipp, read_rows
from tests.integration.keyed_call import CALLER
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import Sipp

pytestmark = [pytest.mark.sipp, needs_sipp, needs_raw]


async def test_sigkill_mid_call_then_restart_marks_row_interrupted(tmp_path: Path) -> None:
    env, sip_port, database = bot_env(tmp_path)
    sipp = Sipp(workdir=tmp_path / "sipp")
    pcap = write_dtmf_pcap(tmp_path / "keys.pcap", "3#", lead_in_ms=800, gap_ms=250)

    first = BotProcess(env, tmp_path)
    second = BotProcess(env, tmp_path)
    call: asyncio.Task | None = None
    try:
        await first.start()
        call = asyncio.create_task(
            sipp.arun_scenario(
                "uac_hangup",
                f"127.0.0.1:{sip_port}",
                keys={**CALLER, "pcap": pcap, "hangup_after_ms": 600000},
                timeout_s=30,
            )
        )
        # the call is answered and journalled, then "3#" is keyed (ask_value plays)
        await first.wait_line("call.answered", 10)
        await first.wait_line("key=#", 10)
        rows = read_rows(database)
        assert [r["status"] for r in rows] == ["in_progress"], rows

        assert first.proc is not None
        first.proc.send_signal(signal.SIGKILL)
        assert await first.finish(5) == -signal.SIGKILL
        call.cancel()  # the caller's SIPp would wait for 10 minutes
        with contextlib.suppress(asyncio.CancelledError):
            await call

        await second.start()
        await second.wait_line("journal.recovered_interrupted_calls", 5)
        (row,) = read_rows(database)
        assert row["status"] == "incomplete", row
        assert row["end_reason"] == "interrupted", row
        assert row["ended_at"], row
        assert row["pbx_call_id"] == CALLER["pbx_call_id"] and row["codec"] == "PCMU", row

        assert second.proc is not None
        began = time.monotonic()
        second.proc.send_signal(signal.SIGTERM)
        rc = await second.finish(5)
        assert rc == 0, second.output()
        assert time.monotonic() - began < 5
        assert second.has("voicebot.stopped"), second.output()
    finally:
        if call is not None and not call.done():
            call.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await call
        await first.kill()
        await second.kill()
