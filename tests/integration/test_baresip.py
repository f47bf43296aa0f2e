"""End to end with a second, independent SIP stack: baresip dials the bot over
loopback, keys the menu as RFC 4733 telephone-events, and the bot saves the
categorization and hangs up (DESIGN.md: the manager's desk phone path).

baresip runs headless (see baresip_peer.py); the bot runs in-process as
`VoicebotApp`, so its journal is read directly.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest
import structlog

from tests.integration.baresip_peer import BaresipPeer
from tests.ports import rtp_window
from voicebot.app import VoicebotApp
from voicebot.logs import configure_logging
from voicebot.settings import (
    Category,
    HttpSettings,
    IvrSettings,
    Settings,
    SipSettings,
    StorageSettings,
    WebhookSettings,
)

pytestmark = [
    pytest.mark.baresip,
    pytest.mark.skipif(
        shutil.which("baresip") is None and not os.environ.get("CI"),
        reason="baresip not installed (apt-get install baresip); required when CI is set",
    ),
]

KEYS = "3#1500#1"
KEY_SPACING_S = 0.25
MANAGER = "201"


@pytest.fixture
def bot_logging():
    saved = structlog.get_config()
    configure_logging("debug", "console")
    yield
    structlog.configure(**saved)


def bot_settings(tmp_path: Path) -> Settings:
    rtp_min, rtp_max = rtp_window(calls=4)
    return Settings(
        sip=SipSettings(
            mode="peer",
            bind_host="127.0.0.1",
            bind_port=0,
            allowed_peers=["127.0.0.0/8"],
            rtp_port_min=rtp_min,
            rtp_port_max=rtp_max,
        ),
        ivr=IvrSettings(language="en", first_digit_timeout_s=4, digit_timeout_s=3),
        categories=[Category(code="3", name="existing order")],
        storage=StorageSettings(database=tmp_path / "journal.db"),
        http=HttpSettings(host="127.0.0.1", port=0),
        webhooks=WebhookSettings(endpoints=[]),
    )


async def test_baresip_keys_a_categorization(tmp_path: Path, bot_logging):
    # The directory's autouse `isolated_env` keeps host VOICEBOT_* settings out.
    started = time.monotonic()
    app = VoicebotApp(bot_settings(tmp_path))
    peer = BaresipPeer(tmp_path, user=MANAGER, rtp_ports=(39400, 39599))
    passed = False
    try:
        async with asyncio.timeout(60):
            await app.start()
            assert app.user_agent is not None and app.journal is not None
            bot_port = app.user_agent.local_address[1]
            await peer.start()

            await peer.dial(f"sip:bot@127.0.0.1:{bot_port}")
            established = await peer.wait_event("CALL_ESTABLISHED", "CALL_CLOSED", timeout=10)
            assert established["type"] == "CALL_ESTABLISHED", established
            mark = len(peer.events)

            await asyncio.sleep(1.0)  # the manager hears the greeting start
            for key in KEYS:
                await peer.press(key)
                await asyncio.sleep(KEY_SPACING_S)

            # "saved" plays (not interruptible), the row is stored, then BYE.
            closed = await peer.wait_event("CALL_CLOSED", timeout=20, start=mark)
            assert closed.get("direction") == "outgoing", closed

            rows = await app.journal.recent()
            assert len(rows) == 1, rows
            row = rows[0]
            assert row.status == "confirmed", row
            assert row.category_code == "3", row
            assert row.category_name == "existing order", row
            assert row.value == Decimal("1500"), row
            assert row.manager == MANAGER, row
            assert row.digits == KEYS, row  # no key lost or doubled
            assert row.attempts == 1, row
            assert row.end_reason == "confirmed", row
            assert row.codec in ("PCMU", "PCMA"), row
            assert row.ended_at is not None, row
        passed = True
    finally:
        await peer.stop()
        await app.stop()
        elapsed = time.monotonic() - started
        if not passed:
            events = [(e.get("type"), e.get("param")) for e in peer.events]
            print(f"--- baresip events: {events}", file=sys.stderr)
            print(f"--- baresip log ({peer.log_path}):\n{peer.log_text()}", file=sys.stderr)
        print(f"baresip e2e took {elapsed:.1f} s", file=sys.stderr)
