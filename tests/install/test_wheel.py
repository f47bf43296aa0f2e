"""The package as a user installs it: a wheel built by `python -m build`, installed
into a fresh virtualenv outside the checkout, must check, run and take a call.

Nothing of the checkout may leak in: the source is copied to a temporary tree
before building (so the build cannot write into the checkout, and a stray
file there cannot end up in the wheel), every command runs from an empty
temporary directory with no PYTHONPATH and no VOICEBOT_* variable of the host,
and the test asserts that `voicebot` is imported from the venv's site-packages.
The wheel once held no `.wav` at all and `voicebot check` failed on defaults;
this is the test that would have said so.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port, rtp_window
from voicebot import __version__

REPO = Path(__file__).resolve().parents[2]
#: what a user's checkout or sdist holds that is not build input
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", "data", ".*cache"
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VOICEBOT_") and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(extra)
    return env


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{args} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv holding only the wheel and its dependencies."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=NOT_SOURCE)
    env = clean_env()
    run([sys.executable, "-m", "build", "--wheel", "--outdir", str(root / "dist"), str(source)],
        cwd=root, env=env)  # fmt: skip
    wheels = list((root / "dist").glob("voicebot-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root, env=env)
    run([str(venv / "bin" / "pip"), "install", "-q", str(wheels[0])], cwd=root, env=env)
    return venv / "bin"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty current directory: no ./voicebot.toml, no ./voicebot package."""
    (tmp_path / "cwd").mkdir()
    return tmp_path / "cwd"


def bot_env(tmp_path: Path) -> dict[str, str]:
    rtp_min, rtp_max = rtp_window(calls=4)
    return clean_env(
        VOICEBOT_SIP__MODE="peer",
        VOICEBOT_SIP__BIND_HOST="127.0.0.1",
        VOICEBOT_SIP__BIND_PORT=str(free_port()),
        VOICEBOT_SIP__ALLOWED_PEERS='["127.0.0.1/32"]',
        VOICEBOT_SIP__RTP_PORT_MIN=str(rtp_min),
        VOICEBOT_SIP__RTP_PORT_MAX=str(rtp_max),
        VOICEBOT_HTTP__HOST="127.0.0.1",
        VOICEBOT_HTTP__PORT=str(free_port(udp=False)),
        VOICEBOT_IVR__LANGUAGE="en",
        VOICEBOT_STORAGE__DATABASE=str(tmp_path / "state" / "voicebot.db"),
    )


def test_the_installed_package_is_the_one_imported(installed: Path, workdir: Path) -> None:
    where = run(
        [str(installed / "python"), "-c", "import voicebot, ivr, webhooks, sys;"
         "print(voicebot.__file__); print(ivr.__file__); print(webhooks.__file__)"],
        cwd=workdir, env=clean_env(),
    )  # fmt: skip
    site = installed.parent / "lib"
    for line in where.splitlines():
        assert Path(line).is_relative_to(site), (line, "imported from outside the venv")


def test_version_comes_from_the_package(installed: Path, workdir: Path) -> None:
    out = run([str(installed / "voicebot"), "--version"], cwd=workdir, env=clean_env())
    assert out.strip() == f"voicebot {__version__}"


def test_check_passes_on_defaults_with_the_shipped_prompts(
    installed: Path, workdir: Path, tmp_path: Path
) -> None:
    env = bot_env(tmp_path)
    for language in ("ru", "uk", "en"):
        env["VOICEBOT_IVR__LANGUAGE"] = language
        run([str(installed / "voicebot"), "check"], cwd=workdir, env=env)


@pytest.fixture
def running_bot(installed: Path, workdir: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = bot_env(tmp_path)
    log = (tmp_path / "bot.log").open("w")
    bot = subprocess.Popen(
        [str(installed / "voicebot"), "run"], cwd=workdir, env=env, stdout=log, stderr=log
    )
    try:
        wait_healthy(int(env["VOICEBOT_HTTP__PORT"]), bot, tmp_path / "bot.log")
        yield env
    finally:
        if bot.poll() is None:
            bot.send_signal(signal.SIGTERM)
            try:
                bot.wait(timeout=20)
            except subprocess.TimeoutExpired:
                bot.kill()
                bot.wait()
        log.close()
    # SIGTERM is the graceful stop systemd sends (config/voicebot.service)
    assert bot.returncode == 0, (tmp_path / "bot.log").read_text()
    assert "voicebot.stopped" in (tmp_path / "bot.log").read_text()


def wait_healthy(port: int, bot: subprocess.Popen[bytes], log: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert bot.poll() is None, f"voicebot run exited {bot.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"voicebot run not healthy within {timeout}s:\n{log.read_text()}")


def test_run_answers_a_simulated_call_and_stores_it(
    installed: Path, workdir: Path, running_bot: dict[str, str]
) -> None:
    phone_lo, phone_hi = rtp_window(calls=2)  # not the fixed default: it may be taken here
    out = run(
        [str(installed / "voicebot"), "simulate-call", "--digits", "3#1500#1", "--json",
         "--pbx-call-id", "pbx-wheel-1", "--client-number", "+380441234567",
         "--rtp-ports", f"{phone_lo}-{phone_hi}"],
        cwd=workdir, env=running_bot, timeout=90,
    )  # fmt: skip
    outcome = json.loads(out)
    assert outcome["answered"] is True
    assert outcome["heard"][0] == "greeting" and outcome["heard"][-1] == "saved"
    row = outcome["journal"]
    assert isinstance(row, dict), row
    assert row["status"] == "confirmed"
    assert row["category"]["code"] == "3" and float(row["value"]) == 1500
    assert row["pbx_call_id"] == "pbx-wheel-1" and row["client_number"] == "+380441234567"
