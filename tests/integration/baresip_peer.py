"""A headless baresip 1.0 softphone for tests, driven over its ctrl_tcp module.

`BaresipPeer` writes a config dir under a test's tmp_path (no sound card:
audio comes from a generated silent WAV through `aufile`, received audio goes
to an `aubridge` device nobody reads), starts `baresip -f DIR`, and talks
ctrl_tcp: JSON objects framed as netstrings (`<len>:<json>,`) both ways.
Commands are `{"command": ..., "params": ..., "token": ...}` and are answered
by `{"response": true, "ok": ..., "data": ..., "token": ...}`; call events
arrive unsolicited as `{"event": true, "class": "call", "type": "CALL_...", ...}`.

Everything baresip prints (with `-s`, the SIP trace too) goes to a log file
that `log_text()` returns, for printing when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import signal
import wave
from pathlib import Path
from typing import Any

from tests.ports import free_port

MODULE_PATH = Path("/usr/lib/baresip/modules")
SAMPLE_RATE = 8000


class BaresipError(Exception):
    """baresip failed to start, died, refused a command or missed a deadline."""


def write_silence(path: Path, seconds: float) -> None:
    """8 kHz mono S16LE silence: what `aufile` needs for a G.711 call."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(b"\x00\x00" * int(seconds * SAMPLE_RATE))


def _netstring(payload: bytes) -> bytes:
    return b"%d:%s," % (len(payload), payload)


class BaresipPeer:
    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "201",
        rtp_ports: tuple[int, int] = (39400, 39599),
        source_seconds: float = 120.0,
        executable: str = "baresip",
        answermode: str = "manual",
    ) -> None:
        self.workdir = workdir
        self.user = user
        self.rtp_ports = rtp_ports
        self.source_seconds = source_seconds
        self.executable = executable
        self.answermode = answermode  # "auto": answers every call (a manager's desk phone)
        self.config_dir = workdir / "baresip"
        self.log_path = workdir / "baresip.log"
        self.sip_port = 0
        self.ctrl_port = 0
        self.events: list[dict[str, Any]] = []
        self._process: asyncio.subprocess.Process | None = None
        self._log_file: Any = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._read_task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._event_added = asyncio.Event()
        self._tokens = itertools.count(1)
        self._closed_reason: str | None = None

    # -- config ------------------------------------------------------------

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        silence = self.config_dir / "silence.wav"
        write_silence(silence, self.source_seconds)
        # baresip 1.0 listens on UDP and TCP at sip_port and on TLS at sip_port + 1.
        self.sip_port = free_port(span=2)
        self.ctrl_port = free_port(udp=False)
        lines = [
            "poll_method epoll",
            f"sip_listen 127.0.0.1:{self.sip_port}",
            "call_local_timeout 30",
            "call_max_calls 1",
            # No sound card: a long silent file as microphone (aufile ends the
            # call at end of file, so it must outlast the test) and a bridge
            # device nobody reads as speaker.
            f"audio_source aufile,{silence}",
            "audio_player aubridge,nowhere",
            "audio_alert aubridge,nowhere",
            "audio_level no",
            "ausrc_format s16",
            "auplay_format s16",
            "auenc_format s16",
            "audec_format s16",
            "audio_buffer 20-160",
            f"rtp_ports {self.rtp_ports[0]}-{self.rtp_ports[1]}",
            "rtcp_mux no",
            "jitter_buffer_delay 5-10",
            "rtp_stats no",
            "net_interface 127.0.0.1",
            f"module_path {MODULE_PATH}",
            "module g711.so",
            "module aufile.so",
            "module aubridge.so",
            "module_tmp account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen 127.0.0.1:{self.ctrl_port}",
        ]
        (self.config_dir / "config").write_text("\n".join(lines) + "\n")
        # regint=0: no REGISTER; answermode=manual (the default): this phone only dials out.
        account = (
            f"<sip:{self.user}@127.0.0.1:{self.sip_port}>;regint=0;answermode={self.answermode}"
        )
        (self.config_dir / "accounts").write_text(account + "\n")
        (self.config_dir / "contacts").write_text("")

    # -- lifecycle ---------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which(self.executable)
        if binary is None:
            raise BaresipError(f"{self.executable} is not on PATH")
        self.write_config()
        self._log_file = self.log_path.open("wb")
        self._process = await asyncio.create_subprocess_exec(
            binary,
            "-4",
            "-s",  # SIP trace in the log
            "-f",
            str(self.config_dir),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        try:
            async with asyncio.timeout(timeout):
                await self._connect()
                # ctrl_tcp listens before the accounts are loaded: wait for the UA.
                while True:
                    listing = await self.command("reginfo")
                    if f"sip:{self.user}@" in str(listing.get("data", "")):
                        break
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise BaresipError(f"baresip not ready within {timeout} s") from None

    async def _connect(self) -> None:
        assert self._process is not None
        while True:
            if self._process.returncode is not None:
                raise BaresipError(f"baresip exited with {self._process.returncode} at start")
            try:
                self._reader, self._writer = await asyncio.open_connection(
                    "127.0.0.1", self.ctrl_port
                )
            except OSError:
                await asyncio.sleep(0.05)
                continue
            self._read_task = asyncio.create_task(self._read_loop())
            return

    async def stop(self, timeout: float = 5.0) -> None:
        """Quit politely, then SIGTERM, then SIGKILL; never raises."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.command("quit"), 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), timeout / 2)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if process.returncode is not None:
                    break
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, sig)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), timeout / 2)
        if self._read_task is not None:
            self._read_task.cancel()
            with contextlib.suppress(BaseException):
                await self._read_task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError as error:
            return f"(no baresip log: {error})"

    # -- ctrl_tcp ----------------------------------------------------------

    async def _read_loop(self) -> None:
        assert self._reader is not None
        reason = "ctrl_tcp connection closed"
        try:
            while True:
                header = await self._reader.readuntil(b":")
                length = int(header[:-1])
                body = await self._reader.readexactly(length + 1)
                if body[-1:] != b",":
                    reason = f"bad netstring terminator {body[-1:]!r}"
                    break
                message = json.loads(body[:-1])
                if message.get("response"):
                    future = self._pending.pop(str(message.get("token")), None)
                    if future is not None and not future.done():
                        future.set_result(message)
                elif message.get("event"):
                    self.events.append(message)
                    self._event_added.set()
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            reason = f"ctrl_tcp closed: {error!r}"
        except (ValueError, asyncio.LimitOverrunError) as error:
            reason = f"ctrl_tcp garbage: {error!r}"
        finally:
            self._closed_reason = reason
            self._event_added.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(BaresipError(reason))
            self._pending.clear()

    async def command(self, name: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run a baresip command; returns the response, raises if it is not ok."""
        if self._writer is None or self._closed_reason is not None:
            raise BaresipError(f"ctrl_tcp not connected ({self._closed_reason})")
        token = str(next(self._tokens))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        request = {"command": name, "params": params, "token": token}
        self._writer.write(_netstring(json.dumps(request).encode()))
        await self._writer.drain()
        try:
            response = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BaresipError(f"no response to {name!r} within {timeout} s") from None
        finally:
            self._pending.pop(token, None)
        if not response.get("ok"):
            raise BaresipError(f"{name} {params!r} failed: {response.get('data')!r}")
        return response

    async def wait_event(self, *types: str, timeout: float, start: int = 0) -> dict[str, Any]:
        """The first event at index >= `start` whose type is one of `types`."""

        async def scan() -> dict[str, Any]:
            index = start
            while True:
                while index < len(self.events):
                    event = self.events[index]
                    index += 1
                    if event.get("type") in types:
                        return event
                if self._closed_reason is not None:
                    raise BaresipError(f"waiting for {types}: {self._closed_reason}")
                self._event_added.clear()
                await self._event_added.wait()

        try:
            return await asyncio.wait_for(scan(), timeout)
        except TimeoutError:
            seen = [e.get("type") for e in self.events[start:]]
            raise BaresipError(f"no {types} within {timeout} s (events: {seen})") from None

    # -- phone actions -----------------------------------------------------

    async def dial(self, uri: str) -> None:
        await self.command("dial", uri)

    async def press(self, key: str) -> None:
        """One key press as RFC 4733 telephone-events.

        baresip 1.0's `sndcode` sends each character of its parameter as a
        key-down (`call_send_digit(call, key)`) and then one key-release
        (`KEYCODE_REL`), so one `sndcode` per key is one complete press; the
        spacing between presses is the caller's `asyncio.sleep`.
        """
        await self.command("sndcode", key)

    async def hangup(self) -> None:
        await self.command("hangup")
