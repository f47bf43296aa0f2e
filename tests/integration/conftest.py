"""End-to-end fixtures: the real `VoicebotApp` in the test's event loop, driven by SIPp.

`bot` is a started app in peer mode on 127.0.0.1 (SIP port chosen by the OS,
`app.user_agent.local_address[1]`), with its SQLite journal under `tmp_path`
and short IVR timeouts; `make_bot(**overrides)` builds more (register mode,
other peers, fewer attempts). Every app made is stopped at teardown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.ports import rtp_window
from tests.running_apps import RunningApps
from tests.sipp_harness.runner import can_play_pcap
from voicebot.app import VoicebotApp
from voicebot.settings import Settings

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIP_SCENARIOS = Path(__file__).resolve().parents[1] / "sip" / "scenarios"

needs_sipp = pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
needs_raw = pytest.mark.skipif(
    not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root / CAP_NET_RAW)"
)


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    """Settings of a test bot; `sip=` / `ivr=` / `storage=` overrides are merged
    into those sections."""
    rtp_min, rtp_max = rtp_window(calls=16)
    sip: dict[str, Any] = {
        "mode": "peer",
        "bind_host": "127.0.0.1",
        "bind_port": 0,
        "rtp_port_min": rtp_min,
        "rtp_port_max": rtp_max,
        **overrides.pop("sip", {}),
    }
    ivr: dict[str, Any] = {
        "language": "en",
        "first_digit_timeout_s": 2,
        "digit_timeout_s": 1.5,
        **overrides.pop("ivr", {}),
    }
    return Settings(
        sip=sip,
        ivr=ivr,
        categories=[
            {"code": "1", "name": "sale"},
            {"code": "2", "name": "address", "value": 100},
            {"code": "3", "name": "existing order"},
        ],
        storage={"database": tmp_path / "journal" / "voicebot.db", **overrides.pop("storage", {})},
        http={"host": "127.0.0.1", "port": 0},
        webhooks=overrides.pop("webhooks", {"endpoints": []}),
        log={"level": "info", "format": "console"},
        **overrides,
    )


MakeBot = Callable[..., Awaitable[VoicebotApp]]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No VOICEBOT_* variable nor a ./voicebot.toml of the host may leak into settings."""
    for name in list(os.environ):
        if name.startswith("VOICEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def make_bot(running_apps: RunningApps) -> MakeBot:
    async def make(**overrides: Any) -> VoicebotApp:
        return await running_apps.start(lambda root: settings_for(root, **overrides))

    return make


@pytest.fixture
async def bot(make_bot: MakeBot) -> VoicebotApp:
    return await make_bot()


def target(app: VoicebotApp) -> str:
    assert app.user_agent is not None
    return f"127.0.0.1:{app.user_agent.local_address[1]}"


def db_rows(app: VoicebotApp) -> list[dict[str, Any]]:
    """Every journal row, read straight from the SQLite file (WAL: fine while running)."""
    return read_rows(app.settings.storage.database)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    conn = sqlite3.connect(path)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM categorizations ORDER BY started_at")]
    finally:
        conn.close()


async def wait_rows(
    app: VoicebotApp,
    predicate: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 5.0,
) -> list[dict[str, Any]]:
    """Poll the journal file until `predicate(rows)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        rows = db_rows(app)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"journal never matched within {timeout}s: {rows}")
        await asyncio.sleep(0.05)


def finished(rows: list[dict[str, Any]], n: int = 1) -> bool:
    return len(rows) >= n and all(r["status"] != "in_progress" for r in rows)
