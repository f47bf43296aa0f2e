"""SIGTERM on a real `python -m voicebot run` with calls in the menu.

The stop is ordered: new INVITEs get 503 + Retry-After; a call that finishes
its menu within `ivr.shutdown_grace_s` is stored as usual (confirmed); a call
still in the menu when the grace ends is hung up with BYE and stored as
`incomplete`, end reason `shutdown`, with the keys it had pressed; then the
process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import pytest

from tests.integration.bot_process import BotProcess, bot_env
from tests.integration.conftest import SCENARIOS, needs_raw, needs_sipp, read_rows
from tests.integration.keyed_call import CALLER
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import Sipp, SippResult

pytestmark = [pytest.mark.sipp, needs_sipp, needs_raw]

GRACE_S = 12


async def wait_keys(bot: BotProcess, pbx_call_id: str, n: int, timeout: float) -> None:
    """Until the bot logged `n` keys for the call the PBX named `pbx_call_id`."""
    deadline = time.monotonic() + timeout
    while True:
        mark = f"pbx_call_id={pbx_call_id}"
        keyed = [line for line in bot.lines if "rtp.key_received" in line and mark in line]
        if len(keyed) >= n:
            return
        assert time.monotonic() < deadline, f"{len(keyed)} keys of {pbx_call_id}:\n{bot.output()}"
        await asyncio.sleep(0.05)


async def test_sigterm_lets_menus_finish_then_saves_the_rest_as_shutdown(tmp_path: Path) -> None:
    env, port, database = bot_env(
        tmp_path,
        # Long enough that the unfinished call is still collecting at the grace's end.
        ivr__first_digit_timeout_s="60",
        ivr__digit_timeout_s="60",
        ivr__shutdown_grace_s=str(GRACE_S),
    )
    sipp = Sipp(workdir=tmp_path / "sipp")
    unfinished = write_dtmf_pcap(tmp_path / "unfinished.pcap", "3#15", lead_in_ms=800, gap_ms=250)
    full = write_dtmf_pcap(tmp_path / "full.pcap", "3#1500#1", lead_in_ms=3000, gap_ms=400)
    bot = BotProcess(env, tmp_path)
    calls: list[asyncio.Task[SippResult]] = []
    try:
        await bot.start()
        target = f"127.0.0.1:{port}"

        def dial(pbx_call_id: str, pcap: Path) -> asyncio.Task[SippResult]:
            keys = {**CALLER, "pbx_call_id": pbx_call_id, "pcap": pcap}
            task = asyncio.create_task(
                sipp.arun_scenario("uac_dtmf", target, keys=keys, timeout_s=GRACE_S + 30)
            )
            calls.append(task)
            return task

        stuck = dial("stuck", unfinished)
        finishing = dial("finishing", full)
        await wait_keys(bot, "stuck", 4, 15)  # 3#15, then silence
        await wait_keys(bot, "finishing", 1, 15)  # mid-menu when SIGTERM comes
        assert [r["status"] for r in read_rows(database)] == ["in_progress"] * 2

        assert bot.proc is not None
        bot.proc.send_signal(signal.SIGTERM)
        await bot.wait_line("voicebot.draining", 5)

        # 1. a new call is refused while the others finish
        refused = await sipp.arun_scenario(
            SCENARIOS / "uac_expect_503.xml", target, keys=CALLER, timeout_s=10
        )
        assert refused.ok and refused.successful_calls == 1, refused.describe()

        # 2. the call that finishes within the grace is stored as usual
        finished = await finishing
        assert finished.ok and finished.successful_calls == 1, finished.describe()
        # 3. the one still in the menu is hung up (uac_dtmf succeeds on the bot's BYE)
        ended = await stuck
        assert ended.ok and ended.successful_calls == 1, ended.describe()

        # 4. then the process exits cleanly
        assert await bot.finish(GRACE_S + 15) == 0, bot.output()
        assert bot.has("voicebot.stopped"), bot.output()
    finally:
        for task in calls:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await bot.kill()

    rows = {r["pbx_call_id"]: r for r in read_rows(database)}
    assert rows["finishing"]["status"] == "confirmed", rows["finishing"]
    assert rows["finishing"]["digits"] == "3#1500#1", rows["finishing"]
    shut = rows["stuck"]
    assert shut["status"] == "incomplete", shut
    assert shut["end_reason"] == "shutdown", shut
    assert shut["digits"] == "3#15", shut
    assert shut["category_code"] == "3", shut
    assert shut["ended_at"], shut
