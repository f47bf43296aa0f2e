"""`python -m voicebot run` as a real process: SIGKILL mid-call leaves an
`in_progress` row that the next start marks incomplete / interrupted; SIGTERM
stops the bot cleanly with exit status 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import CALLER, needs_raw, needs_sipp, read_rows
from tests.ports import free_port, rtp_window
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import Sipp

pytestmark = [pytest.mark.sipp, needs_sipp, needs_raw]

REPO = Path(__file__).resolve().parents[2]


class BotProcess:
    """One `python -m voicebot run`, its merged output collected line by line."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 20.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "voicebot",
            "run",
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        await self.wait_line("voicebot.started", timeout)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def has(self, needle: str) -> bool:
        return any(needle in line for line in self.lines)

    async def wait_line(self, needle: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.has(needle):
            assert self.proc is not None
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {needle!r} in the bot's output:\n" + self.output())
            await asyncio.sleep(0.05)

    def output(self) -> str:
        return "\n".join(self.lines[-60:])

    async def finish(self, timeout: float) -> int:
        assert self.proc is not None
        rc = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 2)
        return rc

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def test_sigkill_mid_call_then_restart_marks_row_interrupted(tmp_path: Path) -> None:
    database = tmp_path / "data" / "voicebot.db"
    sip_port = free_port()
    rtp_min, rtp_max = rtp_window()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        VOICEBOT_SIP__MODE="peer",
        VOICEBOT_SIP__BIND_HOST="127.0.0.1",
        VOICEBOT_SIP__BIND_PORT=str(sip_port),
        VOICEBOT_SIP__RTP_PORT_MIN=str(rtp_min),
        VOICEBOT_SIP__RTP_PORT_MAX=str(rtp_max),
        VOICEBOT_STORAGE__DATABASE=str(database),
        VOICEBOT_HTTP__PORT="0",
        VOICEBOT_IVR__LANGUAGE="en",
        VOICEBOT_IVR__FIRST_DIGIT_TIMEOUT_S="2",
        VOICEBOT_IVR__DIGIT_TIMEOUT_S="1.5",
        VOICEBOT_LOG__LEVEL="info",
    )
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
