"""config/pbx/asterisk.conf on a real Asterisk 22: the post-call flow end to end.

The dialplan is loaded from the repository file itself (an ``#include`` of its
absolute path, so not one character differs from what users copy); the bot's
endpoint comes from config/pbx/asterisk_pjsip.conf with only the bot's address
and port substituted. Around them the test writes what a real PBX already has:
a trunk the client calls in on (identified by its address) and the manager's
extension 201.

Three addresses on loopback keep the parties apart the way hosts would be:
Asterisk and the manager's phone on 127.0.0.1, the client (the trunk) on
127.0.0.2, the bot on 127.0.0.3 -- so Asterisk identifies each by its address
and the bot's From user (the client's number, as Asterisk sends it) cannot pass
for the manager.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.pbx.asterisk import REPO, Asterisk, asterisk_prefix
from tests.ports import free_port, rtp_window
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import Sipp, SippNotFoundError, can_play_pcap
from voicebot.app import VoicebotApp
from voicebot.settings import Settings

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.asterisk,
    pytest.mark.skipif(not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root)"),
]

RECIPE = REPO / "config" / "pbx" / "asterisk.conf"
RECIPE_PJSIP = REPO / "config" / "pbx" / "asterisk_pjsip.conf"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
PBX_HOST, CLIENT_HOST, BOT_HOST = "127.0.0.1", "127.0.0.2", "127.0.0.3"
#: the placeholders in asterisk_pjsip.conf, the only text the test replaces
RECIPE_BOT_HOST, RECIPE_BOT_PORT = "10.0.0.20", "5062"
CLIENT_NUMBER = "+380441234567"
MANAGER = "201"


def sipp_at(host: str, workdir: Path) -> Sipp:
    try:
        return Sipp(local_ip=host, workdir=workdir)
    except SippNotFoundError as missing:
        pytest.fail(str(missing))


def bot_settings(root: Path) -> Settings:
    rtp_min, rtp_max = rtp_window(calls=4, host=BOT_HOST)
    return Settings(
        sip={
            "mode": "peer",
            "bind_host": BOT_HOST,
            "bind_port": free_port(host=BOT_HOST),
            "rtp_port_min": rtp_min,
            "rtp_port_max": rtp_max,
            "allowed_peers": [f"{PBX_HOST}/32"],
        },
        ivr={"language": "en", "first_digit_timeout_s": 6, "digit_timeout_s": 3},
        categories=[{"code": "3", "name": "existing order"}],
        storage={"database": root / "voicebot.db"},
        http={"host": "127.0.0.1", "port": 0},
        webhooks={"endpoints": []},
    )


def pjsip_conf(sip_port: int, manager_port: int, bot_port: int) -> str:
    recipe = RECIPE_PJSIP.read_text(encoding="utf-8")
    assert RECIPE_BOT_HOST in recipe and f"{RECIPE_BOT_HOST}:{RECIPE_BOT_PORT}" in recipe
    endpoint = recipe.replace(f"{RECIPE_BOT_HOST}:{RECIPE_BOT_PORT}", f"{BOT_HOST}:{bot_port}")
    endpoint = endpoint.replace(RECIPE_BOT_HOST, BOT_HOST)
    return f"""[global]
type=global
endpoint_identifier_order=ip,username

[udp]
type=transport
protocol=udp
bind={PBX_HOST}:{sip_port}

; the client's carrier: calls from its address land in the recipe's inbound context
[trunk]
type=endpoint
context=voicebot-inbound
disallow=all
allow=ulaw
dtmf_mode=rfc4733
direct_media=no

[trunk]
type=identify
endpoint=trunk
match={CLIENT_HOST}

; the manager's desk phone
[{MANAGER}]
type=endpoint
context=voicebot-outbound
disallow=all
allow=ulaw
dtmf_mode=rfc4733
direct_media=no
send_connected_line=no
aors={MANAGER}

[{MANAGER}]
type=aor
contact=sip:{MANAGER}@{PBX_HOST}:{manager_port}

{endpoint}
"""


@pytest.fixture
async def asterisk(tmp_path: Path) -> AsyncIterator[Asterisk]:
    pbx = Asterisk(asterisk_prefix(), tmp_path / "asterisk")
    yield pbx
    await pbx.stop()


@pytest.fixture
async def bot(tmp_path: Path) -> AsyncIterator[VoicebotApp]:
    app = VoicebotApp(bot_settings(tmp_path / "bot"))
    await app.start()
    yield app
    await app.stop()


async def test_client_hangs_up_first_and_the_manager_categorizes_through_the_recipe(
    asterisk: Asterisk, bot: VoicebotApp, tmp_path: Path
) -> None:
    assert bot.user_agent is not None
    sip_port, manager_port = free_port(host=PBX_HOST), free_port(host=PBX_HOST)
    asterisk.write_config(
        {
            "pjsip.conf": pjsip_conf(sip_port, manager_port, bot.user_agent.local_address[1]),
            "extensions.conf": f'[general]\nstatic=yes\n\n#include "{RECIPE}"\n',
        },
        rtp_ports=rtp_window(calls=8, host=PBX_HOST),
    )
    await asterisk.start()
    dialplan = await asterisk.cli("dialplan show voicebot-postcall")
    assert "Dial(PJSIP/voicebot,20,b(voicebot-headers^post-call^1))" in dialplan, dialplan

    # The manager keys after the hand-over: the client hangs up 1 s after the
    # answer, the bot answers at once and barge-in cuts its greeting short.
    pcap = write_dtmf_pcap(
        tmp_path / "keys.pcap", "3#1500#1", lead_in_ms=3000, gap_ms=300, with_audio=True
    )
    manager = await sipp_at(PBX_HOST, tmp_path / "manager").start(
        SCENARIOS / "manager_uas.xml",
        None,
        local_port=manager_port,
        keys={"manager": MANAGER, "pcap": pcap},
        timeout_s=60,
        trace_msg=True,
    )
    await manager.listening()
    client = await sipp_at(CLIENT_HOST, tmp_path / "client").arun_scenario(
        SCENARIOS / "client_uac.xml",
        f"{PBX_HOST}:{sip_port}",
        keys={"service": MANAGER, "client_number": CLIENT_NUMBER, "hangup_after_ms": 1000},
        timeout_s=20,
        trace_msg=True,
    )
    assert client.ok, client.describe() + asterisk.log_tail()
    answered = await manager.wait()
    assert answered.ok, answered.describe() + asterisk.log_tail()

    rows = await wait_for_rows(bot)
    assert len(rows) == 1, rows
    row = rows[0]
    assert row.status == "confirmed", (row, asterisk.log_tail())
    assert row.category_code == "3"
    assert row.value is not None and float(row.value) == 1500
    # X-Call-ID: the client's channel's ${UNIQUEID} (epoch.sequence), not a SIP Call-ID
    assert row.pbx_call_id is not None and re.fullmatch(r"\d+\.\d+", row.pbx_call_id), row
    assert row.client_number == CLIENT_NUMBER
    # the From user of the bot's leg is the client's number: only X-Manager says 201
    assert row.manager == MANAGER


async def wait_for_rows(bot: VoicebotApp, timeout_s: float = 15) -> list:
    assert bot.journal is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        rows = await bot.journal.recent(limit=10)
        if rows and all(r.status != "in_progress" for r in rows):
            return rows
        assert loop.time() < deadline, f"no finished journal row in {timeout_s}s: {rows}"
        await asyncio.sleep(0.1)
