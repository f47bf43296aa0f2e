"""`voicebot run --loop uvloop` really runs on uvloop, the default on asyncio's own
loop, and asking for uvloop where it is not installed is one clear line."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.integration.bot_process import REPO, BotProcess, bot_env


@pytest.mark.parametrize(
    ("run_args", "expected"),
    [((), "asyncio"), (("--loop", "uvloop"), "uvloop"), (("--loop", "asyncio"), "asyncio")],
)
async def test_healthz_names_the_loop_run_was_given(
    tmp_path: Path, run_args: tuple[str, ...], expected: str
) -> None:
    if expected == "uvloop":
        pytest.importorskip("uvloop")
    env, _, _ = bot_env(tmp_path)
    bot = BotProcess(env, tmp_path, run_args=run_args)
    await bot.start()
    try:
        started = next(line for line in bot.lines if "voicebot.started" in line)
        match = re.search(r"http=127\.0\.0\.1:(\d+)", started)
        assert match, started
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{match.group(1)}/healthz") as response,
        ):
            health = await response.json()
        assert health["event_loop"] == expected
        assert f"event_loop={expected}" in started
    finally:
        if bot.proc is not None and bot.proc.returncode is None:
            bot.proc.send_signal(signal.SIGTERM)
        assert await bot.finish(30) == 0


def test_uvloop_asked_for_and_missing_is_one_line(tmp_path: Path) -> None:
    # A `uvloop` package that cannot be imported, first on the path: what a
    # machine without the extra looks like to the import.
    shadow = tmp_path / "shadow" / "uvloop"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no uvloop here')\n")
    env, _, _ = bot_env(tmp_path)
    env["PYTHONPATH"] = f"{shadow.parent}:{REPO}"
    done = subprocess.run(
        [sys.executable, "-m", "voicebot", "run", "--loop", "uvloop"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "voicebot: --loop uvloop needs the uvloop package: pip install 'voicebot[uvloop]'"
    ]
