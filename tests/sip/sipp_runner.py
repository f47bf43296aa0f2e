"""SIPp runner for SIP tests (Debian sip-tester) and free UDP ports."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest

SCENARIOS = Path(__file__).parent / "scenarios"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("sipp (Debian package sip-tester) is required in CI")
        pytest.skip("sipp not installed (apt-get install sip-tester)")
    return path


@dataclass
class SippResult:
    returncode: int
    output: str
    errors: str
    logs: str

    def assert_passed(self) -> None:
        assert self.returncode == 0, (
            f"sipp exit {self.returncode}\n--- errors\n{self.errors}\n"
            f"--- output\n{self.output[-3000:]}"
        )


class Sipp:
    """One SIPp process: `-m 1 -timeout 20s -trace_err` on 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.process: asyncio.subprocess.Process | None = None
        self.scenario = ""

    async def start(
        self,
        scenario: str,
        *,
        port: int,
        remote: tuple[str, int] | None = None,
        extra: list[str] | None = None,
    ) -> None:
        self.scenario = scenario
        args = [
            sipp_binary(),
            *([f"{remote[0]}:{remote[1]}"] if remote else []),
            "-sf",
            str(SCENARIOS / scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            "1",
            "-timeout",
            "20s",
            "-timeout_error",
            "-recv_timeout",
            "8000",
            "-trace_err",
            "-trace_logs",
            "-nostdin",
            *(extra or []),
        ]
        self.process = await asyncio.create_subprocess_exec(
            *args,
            cwd=self.workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )

    async def wait(self, timeout: float = 15.0) -> SippResult:
        assert self.process is not None
        try:
            out, _ = await asyncio.wait_for(self.process.communicate(), timeout)
        except TimeoutError:
            self.process.kill()
            out, _ = await self.process.communicate()
        stem = Path(self.scenario).stem
        errors = "".join(
            p.read_text(errors="replace") for p in self.workdir.glob(f"{stem}_*_errors.log")
        )
        logs = "".join(
            p.read_text(errors="replace") for p in self.workdir.glob(f"{stem}_*_logs.log")
        )
        return SippResult(
            self.process.returncode if self.process.returncode is not None else -1,
            out.decode(errors="replace"),
            errors,
            logs,
        )

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
