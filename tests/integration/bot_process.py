"""`python -m voicebot run` as a real child process, its output read line by
line, for the tests that signal or kill it (crash recovery, shutdown)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from tests.ports import free_port, rtp_window

REPO = Path(__file__).resolve().parents[2]


def bot_env(tmp_path: Path, **settings: str) -> tuple[dict[str, str], int, Path]:
    """Environment of a peer-mode bot on 127.0.0.1 (SIP port free now, SQLite
    under `tmp_path`); `settings` are more VOICEBOT_* variables. Returns
    (env, SIP port, database path)."""
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
    env.update({f"VOICEBOT_{name.upper()}": value for name, value in settings.items()})
    return env, sip_port, database


class BotProcess:
    """One `python -m voicebot run`, its merged output collected line by line."""

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        command: tuple[str, ...] = (),
        run_args: tuple[str, ...] = (),
    ) -> None:
        self.env = env
        self.command = command  # a prefix, e.g. setpriv to run as another user
        self.run_args = run_args  # after `voicebot run`, e.g. ("--loop", "uvloop")
        self.cwd = cwd
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 20.0, *, wait_started: bool = True) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.command,
            sys.executable,
            "-m",
            "voicebot",
            "run",
            *self.run_args,
            env=self.env,
            cwd=self.cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._reader = asyncio.create_task(self._read())
        if wait_started:
            await self.wait_line("voicebot.started", timeout)

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def has(self, needle: str) -> bool:
        return any(needle in line for line in self.lines)

    def count(self, needle: str) -> int:
        return sum(needle in line for line in self.lines)

    async def wait_count(self, needle: str, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count(needle) < n:
            assert self.proc is not None
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"fewer than {n} {needle!r} in the output:\n" + self.output())
            await asyncio.sleep(0.05)

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
