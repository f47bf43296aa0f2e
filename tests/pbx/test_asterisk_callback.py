"""A callback through a real Asterisk 22 and the recipe (config/pbx/): the
bot is the recipe's `voicebot` endpoint, dials the manager's extension 201
through `voicebot-dialout`, the manager keys 1 (RFC 4733), the bot REFERs
the manager to the client's number, Asterisk blind-transfers (the recipe's
`allow_transfer=yes`) and dials the client through the trunk, the client
answers, and the job ends `completed`.

Hosts on loopback as in test_asterisk_recipe.py: Asterisk and the manager's
phone on 127.0.0.1, the client behind the trunk on 127.0.0.2, the bot on
127.0.0.3.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.callbacks.callbacks_testkit import eventually
from tests.pbx.asterisk import Asterisk, asterisk_prefix
from tests.pbx.test_asterisk_recipe import (
    BOT_HOST,
    CLIENT_HOST,
    MANAGER,
    PBX_HOST,
    RECIPE,
    RECIPE_BOT_HOST,
    RECIPE_BOT_PORT,
    RECIPE_PJSIP,
    SCENARIOS,
    sipp_at,
)
from tests.ports import free_port, rtp_window
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import can_play_pcap
from voicebot.app import VoicebotApp
from voicebot.settings import Settings

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.asterisk,
    pytest.mark.skipif(not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root)"),
]

CLIENT_NUMBER = "+380441234567"
PASSWORD = "cb-asterisk-secret"
TOKEN = "cb-asterisk"
ALL_WEEK = {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
CB_SCENARIOS = Path(__file__).resolve().parents[1] / "callbacks" / "scenarios"


def register_mode(recipe: str) -> str:
    """The recipe's endpoint for REGISTER mode, edited as its comments say: no
    identify section, the aor takes the registration, the auth is on."""
    identify = recipe.index("[voicebot]\ntype=identify")
    end = recipe.index("\n\n", identify)
    recipe = recipe[:identify] + recipe[end + 2 :]
    contact = re.search(r"^contact=sip:voicebot@.*$", recipe, re.MULTILINE)
    assert contact is not None
    recipe = recipe.replace(contact.group(0), "max_contacts=1\nremove_existing=yes")
    recipe = recipe.replace(";auth=voicebot", "auth=voicebot")
    auth = recipe.index(";[voicebot]\n;type=auth")
    block = "\n".join(line.removeprefix(";") for line in recipe[auth:].splitlines())
    return recipe[:auth] + block.replace("change-me", PASSWORD) + "\n"


def pjsip_conf(sip_port: int, manager_port: int, client_port: int, bot_port: int, mode: str) -> str:
    recipe = RECIPE_PJSIP.read_text(encoding="utf-8")
    if mode == "register":
        recipe = register_mode(recipe)
    endpoint = recipe.replace(f"{RECIPE_BOT_HOST}:{RECIPE_BOT_PORT}", f"{BOT_HOST}:{bot_port}")
    endpoint = endpoint.replace(RECIPE_BOT_HOST, BOT_HOST)
    return f"""[global]
type=global
endpoint_identifier_order=ip,username

[udp]
type=transport
protocol=udp
bind={PBX_HOST}:{sip_port}

; the carrier: the bot's callbacks to clients leave through it
[trunk]
type=endpoint
context=voicebot-inbound
disallow=all
allow=ulaw
dtmf_mode=rfc4733
direct_media=no
aors=trunk

[trunk]
type=aor
contact=sip:carrier@{CLIENT_HOST}:{client_port}

[trunk]
type=identify
endpoint=trunk
match={CLIENT_HOST}

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


@pytest.mark.parametrize("mode", ["peer", "register"])
async def test_manager_first_refer_through_asterisk_completes(
    asterisk: Asterisk, tmp_path: Path, mode: str
) -> None:
    """Peer mode: Asterisk knows the bot by its address. Register mode: the bot
    registers as the recipe's `voicebot` extension, and Asterisk challenges its
    INVITE (401), which the bot answers with credentials."""
    sip_port, manager_port = free_port(host=PBX_HOST), free_port(host=PBX_HOST)
    client_port, bot_port = free_port(host=CLIENT_HOST), free_port(host=BOT_HOST)
    rtp_min, rtp_max = rtp_window(calls=4, host=BOT_HOST)
    settings = Settings(
        sip={
            "mode": mode,
            "username": "voicebot",
            "password": PASSWORD,
            "server": PBX_HOST,
            "port": sip_port,
            "bind_host": BOT_HOST,
            "bind_port": bot_port,
            "rtp_port_min": rtp_min,
            "rtp_port_max": rtp_max,
            "allowed_peers": [f"{PBX_HOST}/32"],
        },
        storage={"database": tmp_path / "voicebot.db"},
        http={"host": "127.0.0.1", "port": 0, "api_token": TOKEN},
        webhooks={"endpoints": []},
        callbacks={
            "enabled": True,
            "targets": [MANAGER],
            "default_region": "UA",
            "timezone": "Europe/Kyiv",
            "working_hours": ALL_WEEK,
            "first_delay_s": 0,
            "ring_timeout_s": 10,
        },
    )
    asterisk.write_config(
        {
            "pjsip.conf": pjsip_conf(sip_port, manager_port, client_port, bot_port, mode),
            "extensions.conf": f'[general]\nstatic=yes\n\n#include "{RECIPE}"\n',
        },
        rtp_ports=rtp_window(calls=8, host=PBX_HOST),
    )
    await asterisk.start()
    pcap = write_dtmf_pcap(tmp_path / "one.pcap", "1", lead_in_ms=1000, with_audio=True)
    manager = await sipp_at(PBX_HOST, tmp_path / "manager").start(
        SCENARIOS / "manager_uas.xml",
        None,
        local_port=manager_port,
        keys={"manager": MANAGER, "pcap": pcap},
        timeout_s=60,
        trace_msg=True,
    )
    client = await sipp_at(CLIENT_HOST, tmp_path / "client").start(
        CB_SCENARIOS / "client_uas_hangup.xml",
        None,
        local_port=client_port,
        timeout_s=60,
        trace_msg=True,
    )
    await manager.listening()
    await client.listening()
    app = VoicebotApp(settings)
    await app.start()
    try:
        if mode == "register":

            async def registered() -> bool:
                assert app.user_agent is not None and app.user_agent.registration is not None
                return app.user_agent.registration.state == "registered"

            await eventually(registered, timeout=10)
        async with aiohttp.ClientSession(
            base_url=f"http://127.0.0.1:{app.http_port}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http:
            async with http.post("/api/v1/callbacks", json={"number": CLIENT_NUMBER}) as r:
                assert r.status == 201, await r.text()

            async def job() -> dict[str, Any]:
                async with http.get("/api/v1/callbacks") as r:
                    [one] = (await r.json())["callbacks"]
                    return dict(one)

            async def settled() -> bool:
                now = await job()  # one read: an attempt is logged while it is dialling
                return now["state"] not in ("queued", "dialling") or (
                    now["state"] == "queued" and bool(now["attempt_log"])
                )

            await eventually(settled, timeout=40)
            done = await job()
        answered = await client.wait()
        assert answered.ok, answered.describe() + asterisk.log_tail()
        talked = await manager.wait()
        assert talked.ok, talked.describe() + asterisk.log_tail()
    finally:
        manager.kill()
        client.kill()
        await app.stop()
    assert done["state"] == "completed", (done, asterisk.log_tail())
    [attempt] = done["attempt_log"]
    assert (attempt["outcome"], attempt["target"], attempt["sip_status"]) == (
        "completed",
        MANAGER,
        200,
    )
    # Asterisk dialled the client through the trunk, the number as the bot asked
    assert f"INVITE sip:{CLIENT_NUMBER}@" in answered.messages_log_text
