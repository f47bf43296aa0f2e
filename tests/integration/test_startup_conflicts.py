"""`voicebot run` without its ports stops at once with one line naming the
address and the setting (issue 6 item 12): the HTTP or SIP port held by
another process, or an RTP range with no port left, where the bot used to
start anyway and then could not carry a single call's audio."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.integration.bot_process import REPO
from tests.ports import free_port, rtp_window

HOST = "127.0.0.1"


def run_bot(tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    rtp_min, rtp_max = rtp_window(calls=2, slack=0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    env.update(
        PYTHONPATH=str(REPO),
        VOICEBOT_STORAGE__DATABASE=str(tmp_path / "voicebot.db"),
        VOICEBOT_SIP__BIND_PORT="0",
        VOICEBOT_SIP__RTP_PORT_MIN=str(rtp_min),
        VOICEBOT_SIP__RTP_PORT_MAX=str(rtp_max),
        VOICEBOT_HTTP__PORT="0",
    )
    env.update({f"VOICEBOT_{name.upper()}": value for name, value in settings.items()})
    return subprocess.run(
        [sys.executable, "-m", "voicebot", "run"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,  # a bot that starts anyway fails the test instead of hanging it
    )


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if "[error" in line or '"error"' in line]
    assert len(errors) == 1, output
    return errors[0]


@pytest.fixture
def held() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def hold(stack: ExitStack, kind: int, port: int) -> None:
    sock = stack.enter_context(socket.socket(socket.AF_INET, kind))
    sock.bind((HOST, port))
    if kind == socket.SOCK_STREAM:
        sock.listen()


@pytest.mark.parametrize(
    ("kind", "setting", "variable"),
    [
        (socket.SOCK_STREAM, "http.port", "VOICEBOT_HTTP__PORT"),
        (socket.SOCK_DGRAM, "sip.bind_port", "VOICEBOT_SIP__BIND_PORT"),
    ],
    ids=["http", "sip"],
)
def test_port_taken(
    tmp_path: Path, held: ExitStack, kind: int, setting: str, variable: str
) -> None:
    """Another process holds the port: one line naming the address, the setting
    and its variable."""
    port = free_port(udp=kind == socket.SOCK_DGRAM, tcp=kind == socket.SOCK_STREAM)
    hold(held, kind, port)
    line = error_line(run_bot(tmp_path, **{setting.replace(".", "__"): str(port)}))
    assert f"{HOST}:{port}" in line and "already in use" in line, line
    assert setting in line and variable in line, line


def test_rtp_range_fully_taken(tmp_path: Path, held: ExitStack) -> None:
    low, high = rtp_window(calls=3, slack=0)
    for port in range(low, high + 1, 2):
        hold(held, socket.SOCK_DGRAM, port)
    done = run_bot(tmp_path, sip__rtp_port_min=str(low), sip__rtp_port_max=str(high))
    line = error_line(done)
    assert f"{low}-{high}" in line, line
    assert "sip.rtp_port_min" in line and "sip.rtp_port_max" in line, line
    assert not (tmp_path / "voicebot.db").exists()  # refused before opening anything
