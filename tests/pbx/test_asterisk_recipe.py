"""config/pbx/asterisk.conf on a real Asterisk 22: the post-call flow end to end.

The dialplan is loaded from the repository file itself (an ``#include`` of its
absolute path, so not one character differs from what users copy); the bot's
endpoint comes from config/pbx/asterisk_pjsip.conf with only the bot's address
and port substituted. Around them the test writes what a real PBX already has:
a trunk the client calls in on (identified by its address) and the manager's
extension 201 (tests/pbx/recipe.py, which also says how the parties are kept
apart on loopback).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.pbx import recipe
from tests.pbx.asterisk import Asterisk
from tests.polling import until
from tests.ports import rtp_window
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import can_play_pcap
from voicebot.app import VoicebotApp
from voicebot.journal import Categorization
from voicebot.settings import Settings

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.asterisk,
    pytest.mark.skipif(not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root)"),
]


def bot_settings(root: Path, ports: recipe.Ports) -> Settings:
    rtp_min, rtp_max = rtp_window(calls=4, host=recipe.BOT_HOST)
    return Settings(
        sip={
            "mode": "peer",
            "bind_host": recipe.BOT_HOST,
            "bind_port": ports.bot,
            "rtp_port_min": rtp_min,
            "rtp_port_max": rtp_max,
            "allowed_peers": [f"{recipe.PBX_HOST}/32"],
        },
        ivr={"language": "en", "first_digit_timeout_s": 6, "digit_timeout_s": 3},
        categories=[{"code": "3", "name": "existing order"}],
        storage={"database": root / "voicebot.db"},
        http={"host": "127.0.0.1", "port": 0},
        webhooks={"endpoints": []},
    )


@pytest.fixture
async def bot(tmp_path: Path, ports: recipe.Ports) -> AsyncIterator[VoicebotApp]:
    app = VoicebotApp(bot_settings(tmp_path / "bot", ports))
    await app.start()
    yield app
    await app.stop()


async def test_client_hangs_up_first_and_the_manager_categorizes_through_the_recipe(
    asterisk: Asterisk, bot: VoicebotApp, ports: recipe.Ports, tmp_path: Path
) -> None:
    assert bot.user_agent is not None and bot.user_agent.local_address[1] == ports.bot
    await recipe.start_asterisk(asterisk, ports)
    dialplan = await asterisk.cli("dialplan show voicebot-postcall")
    assert "Dial(PJSIP/voicebot,20,b(voicebot-headers^post-call^1))" in dialplan, dialplan

    # The manager keys after the hand-over: the client hangs up 1 s after the
    # answer, the bot answers at once and barge-in cuts its greeting short.
    pcap = write_dtmf_pcap(
        tmp_path / "keys.pcap", "3#1500#1", lead_in_ms=3000, gap_ms=300, with_audio=True
    )
    manager = await recipe.manager_phone(tmp_path / "manager", "manager_uas.xml", ports, pcap)
    client = await recipe.sipp_at(recipe.CLIENT_HOST, tmp_path / "client").arun_scenario(
        recipe.SCENARIOS / "client_uac.xml",
        f"{recipe.PBX_HOST}:{ports.sip}",
        keys={
            "service": recipe.MANAGER,
            "client_number": recipe.CLIENT_NUMBER,
            "hangup_after_ms": 1000,
        },
        timeout_s=20,
        trace_msg=True,
    )
    assert client.ok, client.describe() + asterisk.log_tail()
    answered = await manager.wait()
    assert answered.ok, answered.describe() + asterisk.log_tail()

    rows = await finished_rows(bot)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row.status == "confirmed", (row, asterisk.log_tail())
    assert row.category_code == "3"
    assert row.value is not None and float(row.value) == 1500
    # X-Call-ID: the client's channel's ${UNIQUEID} (epoch.sequence), not a SIP Call-ID
    assert row.pbx_call_id is not None and re.fullmatch(r"\d+\.\d+", row.pbx_call_id), row
    assert row.client_number == recipe.CLIENT_NUMBER
    # the From user of the bot's leg is the client's number: only X-Manager says 201
    assert row.manager == recipe.MANAGER


async def finished_rows(bot: VoicebotApp) -> list[Categorization]:
    """The journal's rows once there is one and none is still in progress."""
    assert bot.journal is not None
    journal = bot.journal
    rows: list[Categorization] = []

    async def finished() -> bool:
        rows[:] = await journal.recent(limit=10)
        return bool(rows) and all(r.status != "in_progress" for r in rows)

    await until(finished, timeout=15, what=lambda: f"no finished journal row: {rows}", every=0.1)
    return rows
