"""Run SIPp scenarios against the bot from tests (sync and asyncio).

Why a wrapper: SIPp's defaults are hostile to tests that run side by side with
the bot in one event loop -- it binds UDP 5060 and media ports 6000/6002 unless
told otherwise, runs forever without ``-m``, reports failures only through
its exit status and log files, and draws an interactive screen on stdout.
:class:`Sipp` always passes ``-m/-l``, loopback ``-i``/``-mi``, free ``-p``
and ``-mp`` ports (from :mod:`tests.ports`), a global ``-timeout ...
-timeout_error``, ``-nostdin``, and
collects the error log, the optional message log and the final statistics CSV
from a private temporary directory.  Python kills SIPp if it outlives its own
timeout by :data:`KILL_GRACE_S`.

SIPp exit codes: 0 all calls succeeded, 1 at least one call failed -- but
3.6.1 ALSO exits 1 on fatal load errors (bad XML, a [key] not supplied: see
``stderr``; ``stats`` is then empty), 97 exit by internal command, 99 normal
exit without any call processed, 255 other fatal errors (e.g. a scenario that
neither sends nor receives first), -2 fatal error binding a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.ports import free_port, free_udp_span, udp_bound

__all__ = [
    "DEFAULT_KEYS",
    "SCENARIOS_DIR",
    "Sipp",
    "SippNotFoundError",
    "SippResult",
    "SippRun",
    "build_info_scenario",
    "can_play_pcap",
    "require_sipp",
    "scenario_path",
]

SCENARIOS_DIR = Path(__file__).resolve().parent / "scenarios"
LOOPBACK = "127.0.0.1"
KILL_GRACE_S = 5.0

#: Values for every ``[key]`` the bundled scenarios use; ``keys=`` overrides.
#: SIPp refuses to load a scenario that uses a [key] it was not given.
DEFAULT_KEYS: dict[str, str] = {
    "service": "voicebot",
    "pbx_call_id": "sipp-call-1",
    "client_number": "79990000001",
    "manager": "manager1",
    "codec_pt": "0",
    "codec_name": "PCMU",
    "hangup_after_ms": "600000",
    "rtp_ip": LOOPBACK,
}

#: SIPp built-in keywords: a ``-key`` of the same name is silently IGNORED
#: (found the hard way with [service]); ``service`` is mapped to ``-s``.
RESERVED_KEYS = frozenset(
    {
        "remote_ip", "remote_port", "transport", "local_ip", "local_ip_type", "local_port",
        "media_ip", "media_ip_type", "media_port", "auto_media_port", "call_number",
        "call_id", "cseq", "pid", "branch", "len", "peer_tag_param", "next_url",
        "routes", "users", "userid", "timestamp", "date", "server_ip", "sipp_version",
        "clock_tick", "tdmmap", "fill",
    }
)  # fmt: skip

#: error-log lines SIPp 3.6.1 writes on perfectly good runs
BENIGN_ERROR_LINES = ("Failed to delete FD from epoll", "The following events occurred:")


class SippNotFoundError(RuntimeError):
    """``sipp`` is not installed / not on PATH."""


def require_sipp(binary: str = "sipp") -> str:
    """Path of the SIPp binary, or a clear error telling how to install it."""
    path = shutil.which(binary)
    if path is None:
        raise SippNotFoundError(
            f"{binary!r} not found on PATH: the SIPp end-to-end tests need SIPp >= 3.6 "
            "built with pcap play support (Debian/Ubuntu: apt-get install sip-tester)"
        )
    return path


def can_play_pcap() -> bool:
    """play_pcap_audio sends through a raw socket: root or CAP_NET_RAW is needed."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
    except PermissionError:
        return False
    s.close()
    return True


def scenario_path(scenario: str | Path) -> Path:
    """A path as is, or a bundled scenario name (``"uac_dtmf"`` / ``"uac_dtmf.xml"``)."""
    p = Path(scenario)
    if p.exists():
        return p.resolve()
    name = p.name if p.suffix == ".xml" else p.name + ".xml"
    bundled = SCENARIOS_DIR / name
    if bundled.exists():
        return bundled
    raise FileNotFoundError(f"no scenario {scenario!r} (nor {bundled})")


# ----------------------------------------------------------------------- INFO scenario

_INFO_STEP = """  <send retrans="500">
    <![CDATA[
      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Manager" <sip:[manager]@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INFO
      Contact: <sip:[manager]@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal={signal}
      Duration={duration}
    ]]>
  </send>
  <recv response="200"/>
"""

_INFO_KEYS = set("0123456789*#ABCDabcd")


def build_info_scenario(
    keys: str,
    pause_ms: int = 300,
    *,
    lead_in_ms: int = 500,
    duration_ms: int = 160,
    path: str | Path | None = None,
) -> str:
    """uac_info.xml with one SIP INFO per key of ``keys``; returns the XML text.

    Each INFO (CSeq 2, 3, ...) carries ``Signal=<key>`` / ``Duration=<ms>`` and
    must be answered 200; ``pause_ms`` separates INFOs, ``,`` adds a 1 s pause,
    ``lead_in_ms`` is waited after the ACK.  The caller then waits for the
    bot's BYE.  Writes the XML to ``path`` when given (pass that path to
    :meth:`Sipp.run_scenario`).
    """
    steps: list[str] = []
    if lead_in_ms > 0:
        steps.append(f'  <pause milliseconds="{int(lead_in_ms)}"/>\n')
    cseq = 2
    for ch in keys:
        if ch == ",":
            steps.append('  <pause milliseconds="1000"/>\n')
            continue
        if ch not in _INFO_KEYS:
            raise ValueError(f"not a DTMF key: {ch!r}")
        steps.append(_INFO_STEP.format(cseq=cseq, signal=ch.upper(), duration=int(duration_ms)))
        steps.append(f'  <pause milliseconds="{int(pause_ms)}"/>\n')
        cseq += 1
    template = (SCENARIOS_DIR / "uac_info.xml").read_text(encoding="iso-8859-1")
    marker = "  <!-- @INFO_STEPS@ -->\n"
    if marker not in template:
        raise RuntimeError("uac_info.xml lost its @INFO_STEPS@ marker")
    xml = template.replace(marker, "".join(steps))
    if path is not None:
        Path(path).write_text(xml, encoding="iso-8859-1")
    return xml


# ----------------------------------------------------------------------------- runner


@dataclass(slots=True)
class SippResult:
    """What a SIPp run left behind (texts are read from its private tmp dir)."""

    returncode: int
    stdout: str
    stderr: str
    error_log_text: str
    messages_log_text: str
    #: what the scenario's ``<log message=...>`` actions wrote (``-trace_logs``)
    logs_text: str
    stats: dict[str, str]
    argv: list[str] = field(default_factory=list)
    timed_out: bool = False
    screen_text: str = ""
    local_port: int = 0
    media_port: int = 0

    @property
    def successful_calls(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", "0") or 0)

    @property
    def failed_calls(self) -> int:
        return int(self.stats.get("FailedCall(C)", "0") or 0)

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    @property
    def real_errors(self) -> list[str]:
        """Error-log lines minus the noise SIPp 3.6.1 writes on good runs."""
        return [
            ln
            for ln in self.error_log_text.splitlines()
            if ln.strip() and not any(b in ln for b in BENIGN_ERROR_LINES)
        ]

    def describe(self) -> str:
        """A failure message for asserts."""
        return (
            f"sipp rc={self.returncode} timed_out={self.timed_out} "
            f"ok_calls={self.successful_calls} failed_calls={self.failed_calls}\n"
            f"argv: {' '.join(self.argv)}\n"
            f"--- error log ---\n{self.error_log_text[-4000:]}\n"
            f"--- stderr ---\n{self.stderr[-2000:]}\n"
            f"--- screen ---\n{self.screen_text[-3000:]}\n"
            f"--- messages ---\n{self.messages_log_text[-6000:]}"
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _parse_stats(text: str) -> dict[str, str]:
    rows = [r for r in csv.reader(text.splitlines(), delimiter=";") if r]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1], strict=False))


@dataclass(slots=True)
class _Prepared:
    argv: list[str]
    tmp: Path
    local_port: int
    media_port: int
    timeout_s: float


class Sipp:
    """Build SIPp command lines and run them; one instance may run many scenarios.

    ``workdir``: where each run's private tmp dir is created (default: system
    tmp); ``keep_files``: leave the log files there for post-mortem.
    """

    def __init__(
        self,
        *,
        binary: str = "sipp",
        local_ip: str = LOOPBACK,
        workdir: str | Path | None = None,
        keep_files: bool = False,
    ) -> None:
        self.binary = require_sipp(binary)
        self.local_ip = local_ip
        self.workdir = Path(workdir) if workdir is not None else None
        self.keep_files = keep_files

    def _prepare(
        self,
        scenario: str | Path,
        target: str | None,
        *,
        local_port: int | None,
        keys: Mapping[str, object] | None,
        inf_file: Path | None,
        calls: int,
        concurrency: int | None,
        rate: float | None,
        timeout_s: float,
        media_port: int | None,
        trace_msg: bool,
        extra_args: Sequence[str],
    ) -> _Prepared:
        sf = scenario_path(scenario)
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="sipp-", dir=self.workdir))
        lp = local_port if local_port is not None else free_port(host=self.local_ip)
        # -mp binds mp (audio) and mp+2 (video echo)
        mp = media_port if media_port is not None else free_udp_span(3, host=self.local_ip)
        argv = [
            self.binary,
            "-sf", str(sf),
            *([target] if target else []),
            "-m", str(calls),
            "-l", str(concurrency if concurrency is not None else calls),
            "-i", self.local_ip,
            "-p", str(lp),
            "-mi", self.local_ip,
            "-mp", str(mp),
            "-timeout", f"{max(1, round(timeout_s))}s",
            "-timeout_error",
            "-nostdin",
            "-trace_err", "-error_file", str(tmp / "errors.log"),
            "-trace_stat", "-stf", str(tmp / "stats.csv"), "-fd", "1",
            "-trace_screen", "-screen_file", str(tmp / "screen.log"),
            "-trace_logs", "-log_file", str(tmp / "logs.log"),
        ]  # fmt: skip
        if trace_msg:
            argv += ["-trace_msg", "-message_file", str(tmp / "messages.log")]
        if rate is not None:
            argv += ["-r", f"{rate:g}"]
        if inf_file is not None:
            argv += ["-inf", str(Path(inf_file).resolve())]
        merged: dict[str, object] = {**DEFAULT_KEYS, **(keys or {})}
        clash = RESERVED_KEYS.intersection(merged)
        if clash:
            raise ValueError(
                f"SIPp built-in keyword(s) {sorted(clash)} cannot be set with -key "
                "(use local_port=/media_port= or a differently named [key])"
            )
        argv += ["-s", str(merged.pop("service"))]
        for name, value in merged.items():
            if isinstance(value, Path):
                value = value.resolve()
            argv += ["-key", name, str(value)]
        argv += list(extra_args)
        return _Prepared(argv, tmp, lp, mp, timeout_s)

    def _collect(
        self, prep: _Prepared, rc: int, out: bytes, err: bytes, timed_out: bool
    ) -> SippResult:
        result = SippResult(
            returncode=rc,
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            error_log_text=_read(prep.tmp / "errors.log"),
            messages_log_text=_read(prep.tmp / "messages.log"),
            logs_text=_read(prep.tmp / "logs.log"),
            stats=_parse_stats(_read(prep.tmp / "stats.csv")),
            argv=prep.argv,
            timed_out=timed_out,
            screen_text=_read(prep.tmp / "screen.log"),
            local_port=prep.local_port,
            media_port=prep.media_port,
        )
        if not self.keep_files:
            shutil.rmtree(prep.tmp, ignore_errors=True)
        return result

    def run_scenario(self, scenario: str | Path, target: str | None, **options: Any) -> SippResult:
        """:meth:`arun_scenario` run to completion in its own event loop (blocking).

        Do NOT use with a bot in the same loop; the options are the async one's.
        """
        return asyncio.run(self.arun_scenario(scenario, target, **options))

    async def arun_scenario(
        self, scenario: str | Path, target: str | None, **options: Any
    ) -> SippResult:
        """Run SIPp to completion without blocking the event loop (the bot's);
        the options are :meth:`start`'s."""
        return await (await self.start(scenario, target, **options)).wait()

    async def start(
        self,
        scenario: str | Path,
        target: str | None,
        *,
        local_port: int | None = None,
        keys: Mapping[str, object] | None = None,
        inf_file: Path | None = None,
        calls: int = 1,
        concurrency: int | None = None,
        rate: float | None = None,
        timeout_s: float = 30,
        media_port: int | None = None,
        trace_msg: bool = False,
        extra_args: Iterable[str] = (),
    ) -> SippRun:
        """Start SIPp and return at once; ``await run.wait()`` for its result.

        ``target`` is ``"127.0.0.1:PORT"`` (the bot) for UAC scenarios, ``None``
        for UAS ones (then ``await run.listening()`` before anything dials it).
        ``keys`` are passed as ``-key name value`` over :data:`DEFAULT_KEYS`;
        ``Path`` values are made absolute.  ``timeout_s`` becomes SIPp's
        ``-timeout``; Python kills it ``KILL_GRACE_S`` later.  ``trace_msg``
        fills ``SippResult.messages_log_text``.
        """
        prep = self._prepare(
            scenario, target, local_port=local_port, keys=keys, inf_file=inf_file,
            calls=calls, concurrency=concurrency, rate=rate, timeout_s=timeout_s,
            media_port=media_port, trace_msg=trace_msg, extra_args=tuple(extra_args),
        )  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *prep.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=prep.tmp,
        )
        return SippRun(self, prep, proc)


class SippRun:
    """One SIPp process started by :meth:`Sipp.start`."""

    def __init__(self, sipp: Sipp, prep: _Prepared, proc: asyncio.subprocess.Process) -> None:
        self._sipp = sipp
        self._prep = prep
        self._proc = proc
        self._communicate = asyncio.ensure_future(proc.communicate())
        self.local_port = prep.local_port

    async def listening(self, timeout_s: float = 5.0) -> None:
        """Return once SIPp has bound its SIP port (a UAS is ready to be dialled)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not udp_bound(self.local_port, self._sipp.local_ip):
            if self._communicate.done():
                result = await self.wait()
                raise RuntimeError(f"SIPp exited before it listened\n{result.describe()}")
            if loop.time() > deadline:
                raise TimeoutError(f"SIPp did not bind UDP {self.local_port} in {timeout_s}s")
            await asyncio.sleep(0.01)

    async def wait(self) -> SippResult:
        prep, proc = self._prep, self._proc
        timed_out = False
        try:
            out, err = await asyncio.wait_for(
                asyncio.shield(self._communicate), prep.timeout_s + KILL_GRACE_S
            )
        except (TimeoutError, asyncio.CancelledError) as exc:
            timed_out = isinstance(exc, TimeoutError)
            self.kill()
            out, err = await self._communicate
            if not timed_out:
                shutil.rmtree(prep.tmp, ignore_errors=True)
                raise
        assert proc.returncode is not None
        return self._sipp._collect(prep, proc.returncode, out, err, timed_out)

    def kill(self) -> None:
        """Kill SIPp if it still runs (teardown of a test that failed half-way)."""
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()


def environ_hint() -> str:
    """One line for test reports: which sipp and whether pcap play can work."""
    raw = "yes" if can_play_pcap() else "no"
    return f"sipp={shutil.which('sipp')} raw_socket={raw} uid={os.getuid()}"
