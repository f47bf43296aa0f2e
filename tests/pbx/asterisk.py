"""A real Asterisk 22 for tests: built once per machine from ../shared/vendor, run
from a private temporary etc/var tree with only the configuration a test writes.

Where it comes from: ``VOICEBOT_ASTERISK_PREFIX`` (default
``~/.cache/voicebot/asterisk-22.10.1``). When that prefix holds no build yet and
the vendor folder with the sources is beside the repository (CI has it at
``../shared/vendor``), ``build-asterisk.sh PREFIX`` builds it (about 5 minutes,
once; .ci/run does it before the tests). Without either, the tests skip and say
why. Asterisk writes nothing under PREFIX: every directory it writes to is under
the test's own root.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VENDOR = REPO.parent / "shared" / "vendor"
VERSION = "22.10.1"
DEFAULT_PREFIX = Path.home() / ".cache" / "voicebot" / f"asterisk-{VERSION}"

#: what the recipe and the tests need, nothing that binds other ports
MODULES = [
    "res_pjproject.so",
    "res_sorcery_config.so",
    "res_sorcery_memory.so",
    "res_sorcery_astdb.so",
    "res_timing_timerfd.so",
    "res_rtp_asterisk.so",
    "res_pjsip.so",
    "res_pjsip_session.so",
    "chan_pjsip.so",
    "res_pjsip_sdp_rtp.so",
    "res_pjsip_nat.so",
    "res_pjsip_endpoint_identifier_ip.so",
    "res_pjsip_endpoint_identifier_user.so",
    "res_pjsip_caller_id.so",
    "res_pjsip_header_funcs.so",
    "res_pjsip_pubsub.so",
    "res_pjsip_refer.so",
    "res_pjsip_authenticator_digest.so",
    "res_pjsip_outbound_authenticator_digest.so",
    "res_pjsip_registrar.so",
    "res_pjsip_dtmf_info.so",
    "pbx_config.so",
    "app_dial.so",
    "app_stack.so",
    "app_exec.so",
    "func_channel.so",
    "func_callerid.so",
    "func_logic.so",
    "func_strings.so",
    "codec_ulaw.so",
    "codec_alaw.so",
    "bridge_simple.so",
    "bridge_native_rtp.so",
]


def asterisk_prefix() -> Path:
    """An installed Asterisk 22.10.1, built now if need be; skips when it cannot be had."""
    prefix = Path(os.environ.get("VOICEBOT_ASTERISK_PREFIX", DEFAULT_PREFIX)).expanduser()
    if (prefix / f".built-{VERSION}").exists():
        return prefix
    script = VENDOR / "build-asterisk.sh"
    if not script.exists():
        pytest.skip(
            f"no Asterisk {VERSION} in {prefix} and no sources to build it from"
            f" ({VENDOR} is absent; set VOICEBOT_ASTERISK_PREFIX to an installed build)"
        )
    done = subprocess.run(
        ["bash", str(script), str(prefix)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"build-asterisk.sh {prefix} failed:\n{done.stdout}\n{done.stderr}")
    return prefix


class Asterisk:
    """One Asterisk process with the configuration files a test gives it."""

    def __init__(self, prefix: Path, root: Path) -> None:
        self.prefix = prefix
        self.root = root
        self.etc = root / "etc"
        self.var = root / "var"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def full_log(self) -> Path:
        return self.var / "log" / "full"

    def write_config(self, files: dict[str, str], *, rtp_ports: tuple[int, int]) -> None:
        """The skeleton (directories, modules, logger, RTP range) plus ``files``."""
        for sub in ("lib", "run", "log", "spool", "agi"):
            (self.var / sub).mkdir(parents=True, exist_ok=True)
        self.etc.mkdir(parents=True, exist_ok=True)
        skeleton = {
            "asterisk.conf": f"""[directories]
astetcdir => {self.etc}
astmoddir => {self.prefix}/lib/asterisk/modules
astvarlibdir => {self.var}/lib
astdbdir => {self.var}/lib
astkeydir => {self.var}/lib
astdatadir => {self.prefix}/var/lib/asterisk
astagidir => {self.var}/agi
astspooldir => {self.var}/spool
astrundir => {self.var}/run
astlogdir => {self.var}/log
astsbindir => {self.prefix}/sbin
[options]
documentation_language = en_US
""",
            "modules.conf": "[modules]\nautoload=no\n" + "".join(f"load => {m}\n" for m in MODULES),
            "logger.conf": "[logfiles]\nfull => notice,warning,error,verbose(3),dtmf\n",
            "rtp.conf": f"[general]\nrtpstart={rtp_ports[0]}\nrtpend={rtp_ports[1]}\n",
        }
        for name, text in {**skeleton, **files}.items():
            (self.etc / name).write_text(text, encoding="utf-8")

    async def start(self, timeout_s: float = 30) -> None:
        self.process = await asyncio.create_subprocess_exec(
            str(self.prefix / "sbin" / "asterisk"),
            "-C", str(self.etc / "asterisk.conf"), "-f", "-n", "-q",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=(self.root / "stdout.log").open("wb"),
            stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        control = self.var / "run" / "asterisk.ctl"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not control.exists():
            if self.process.returncode is not None or loop.time() > deadline:
                raise AssertionError(f"Asterisk did not come up:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        await self.cli("core waitfullybooted", timeout_s=timeout_s)

    async def cli(self, command: str, timeout_s: float = 10) -> str:
        """Run one CLI command in the running Asterisk (``asterisk -rx``)."""
        remote = await asyncio.create_subprocess_exec(
            str(self.prefix / "sbin" / "asterisk"),
            "-C", str(self.etc / "asterisk.conf"), "-rx", command,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(remote.communicate(), timeout_s)
        return out.decode(errors="replace")

    def log_tail(self, chars: int = 6000) -> str:
        texts = []
        for path in (self.root / "stdout.log", self.full_log):
            with contextlib.suppress(FileNotFoundError):
                texts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-chars:]}")
        return "\n".join(texts)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(OSError, TimeoutError):
            await self.cli("core stop now", timeout_s=5)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
