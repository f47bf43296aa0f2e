"""config/voicebot.service: systemd accepts every line, and it keeps the promises the
docs make (a dedicated user, the database in a writable state directory, restart on
failure, SIGTERM as the graceful stop with time to finish it)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from voicebot.settings import IvrSettings, StorageSettings
from voicebot.sip import registration

UNIT = Path(__file__).resolve().parents[2] / "config" / "voicebot.service"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_systemd_accepts_every_directive(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze (Debian package systemd) is required in CI")
        pytest.skip("systemd-analyze not installed (apt-get install systemd)")
    # verify also checks that ExecStart's binary exists: point it at one that does
    text = UNIT.read_text(encoding="utf-8").replace("/opt/voicebot/bin/voicebot", "/bin/true")
    unit = tmp_path / "voicebot.service"
    unit.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 on unknown keys and bad values; it only says so on stderr
    complaints = [ln for ln in done.stderr.splitlines() if str(unit) in ln]
    assert done.returncode == 0 and not complaints, done.stderr


def test_runs_as_its_own_user_with_the_database_in_its_state_directory() -> None:
    found = directives()
    assert found["DynamicUser"] == ["yes"]
    assert found["StateDirectory"] == ["voicebot"]
    assert "VOICEBOT_STORAGE__DATABASE=%S/voicebot/voicebot.db" in found["Environment"]
    assert found["CapabilityBoundingSet"] == [""]


def test_restarts_on_failure_and_stops_gracefully_on_sigterm() -> None:
    found = directives()
    assert found["Restart"] == ["on-failure"]
    assert found["KillSignal"] == ["SIGTERM"]
    # VoicebotApp.stop() with default settings, at its longest: the menus' grace,
    # the saves of the calls it ends, BYE, un-REGISTER, webhook POSTs in flight
    longest_stop = (
        IvrSettings().shutdown_grace_s
        + StorageSettings().write_deadline_s
        + 5
        + 1
        + registration.UNREGISTER_TIMEOUT
        + 5
    )
    assert int(found["TimeoutStopSec"][0].removesuffix("s")) > longest_stop
