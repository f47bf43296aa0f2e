"""The bot under measure as the benches run it: `python -m voicebot run` of a
checkout in a process of its own, on loopback, set up by VOICEBOT_* variables
alone (none of the shell's leak in); its health check; watching it over a
measurement window (CPU, peak RSS and threads; py-spy); stopping it (or any
other process a bench started) and counting the tracebacks it logged."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"


def bot_env(
    workdir: Path,
    sip_port: int,
    http_port: int,
    rtp: tuple[int, int],
    *,
    src: Path = ROOT,
    flood_defaults: bool = False,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of a bot in peer mode with its database in `workdir`,
    running `src`'s voicebot (this checkout's, or another for before/after).
    `flood_defaults` keeps the default per-source INVITE rate (bench/overload.py
    measures it); otherwise it is lifted, since every call a bench places comes
    from 127.0.0.1: the media path is measured, not that limit. `extra` are
    further VOICEBOT_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    env.update({
        "PYTHONPATH": str(src),
        "VOICEBOT_SIP__MODE": "peer",
        "VOICEBOT_SIP__BIND_HOST": LOOPBACK,
        "VOICEBOT_SIP__BIND_PORT": str(sip_port),
        "VOICEBOT_SIP__RTP_PORT_MIN": str(rtp[0]),
        "VOICEBOT_SIP__RTP_PORT_MAX": str(rtp[1]),
        "VOICEBOT_STORAGE__DATABASE": str(workdir / "voicebot.db"),
        "VOICEBOT_HTTP__HOST": LOOPBACK,
        "VOICEBOT_HTTP__PORT": str(http_port),
        "VOICEBOT_IVR__LANGUAGE": "en",
        # a call keeps its menu open as long as a bench runs it
        "VOICEBOT_IVR__FIRST_DIGIT_TIMEOUT_S": "120",
        "VOICEBOT_IVR__DIGIT_TIMEOUT_S": "60",
        "VOICEBOT_LOG__LEVEL": "warning",
    })  # fmt: skip
    if not flood_defaults:
        env["VOICEBOT_SIP__INVITE_RATE_PER_SOURCE"] = "1000"
        env["VOICEBOT_SIP__INVITE_BURST_PER_SOURCE"] = "1000"
    env.update(extra or {})
    return env


def start_bot(
    workdir: Path, env: Mapping[str, str], *args: str, launcher: Sequence[str] = ("-m", "voicebot")
) -> subprocess.Popen[bytes]:
    """`python -m voicebot run *args` in `workdir`, its output in bot_stdout.txt
    and bot_stderr.txt there. `launcher` replaces `-m voicebot` (bench/stage_trace.py)."""
    return subprocess.Popen(
        [sys.executable, *launcher, "run", *args],
        cwd=workdir,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=(workdir / "bot_stdout.txt").open("wb"),
        stderr=(workdir / "bot_stderr.txt").open("wb"),
    )


def wait_healthy(
    proc: subprocess.Popen[bytes], http_port: int, workdir: Path, timeout_s: float = 20
) -> dict[str, Any]:
    """The bot's /healthz once it answers 200. If the bot exits first, the error
    shows the end of its stderr; if it is not up in time, it is killed."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"voicebot exited rc={proc.returncode}: "
                + (workdir / "bot_stderr.txt").read_text()[-2000:]
            )
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{http_port}/healthz", timeout=1) as r:
                return dict(json.load(r))
        except OSError:
            time.sleep(0.1)
    stop_process(proc, signal.SIGKILL)
    raise RuntimeError(f"voicebot did not become healthy in {timeout_s:g} s")


def watch(
    process: psutil.Process, end: float, now: Callable[[], float] = time.monotonic
) -> tuple[float, float, int]:
    """`process`'s CPU % since its last `cpu_percent()` (NaN if it died), and its
    peak RSS (MB) and thread count, sampled every 0.5 s until `now()` is `end`."""
    rss = threads = 0
    while now() < end:
        with contextlib.suppress(psutil.Error):
            rss = max(rss, process.memory_info().rss)
            threads = max(threads, process.num_threads())
        time.sleep(min(0.5, max(0.0, end - now())))
    try:
        cpu = process.cpu_percent(None)
    except psutil.Error:
        cpu = math.nan
    return cpu, rss / 2**20, threads


def start_py_spy(
    py_spy: str, pid: int, seconds: float, out: Path, *options: str
) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for `seconds` (at least 1) as raw stacks into `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [py_spy, "record", "--nonblocking", *options, "-p", str(pid),
         "-d", str(max(1, round(seconds))), "-r", "100", "-f", "raw", "-o", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def stop_process(
    proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, grace: float = 5
) -> None:
    """Send `sig`; after `grace` seconds still running, kill."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(5)


def tracebacks(log: Path) -> int:
    """How many tracebacks the bot wrote to `log`."""
    return log.read_text(errors="replace").count("Traceback")
