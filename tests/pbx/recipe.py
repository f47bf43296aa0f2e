"""The recipe (config/pbx/) on a real Asterisk over loopback, as the tests/pbx
tests run it: the hosts and ports of each party, the PBX around the recipe's
endpoint, the phones (SIPp) and the bot's settings.

Three addresses on loopback keep the parties apart the way hosts would be:
Asterisk and the manager's phone on 127.0.0.1, the client (the trunk) on
127.0.0.2, the bot on 127.0.0.3 -- so Asterisk identifies each by its address
and the bot's From user (the client's number, as Asterisk sends it) cannot pass
for the manager.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.callbacks.callbacks_testkit import TOKEN, callbacks_section
from tests.pbx.asterisk import REPO, Asterisk
from tests.polling import until
from tests.ports import free_port, rtp_window
from tests.sipp_harness.runner import Sipp, SippNotFoundError, SippRun
from voicebot.app import VoicebotApp
from voicebot.settings import Settings

RECIPE = REPO / "config" / "pbx" / "asterisk.conf"
RECIPE_PJSIP = REPO / "config" / "pbx" / "asterisk_pjsip.conf"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
CB_SCENARIOS = REPO / "tests" / "callbacks" / "scenarios"
PBX_HOST, CLIENT_HOST, BOT_HOST = "127.0.0.1", "127.0.0.2", "127.0.0.3"
#: the placeholders in asterisk_pjsip.conf, the only text the tests replace
RECIPE_BOT_HOST, RECIPE_BOT_PORT = "10.0.0.20", "5062"
CLIENT_NUMBER = "+380441234567"
MANAGER = "201"
#: the bot's password in register mode (the recipe's `change-me`)
PASSWORD = "cb-asterisk-secret"


@dataclass(frozen=True)
class Ports:
    """The SIP port of each party, free on its host."""

    sip: int
    manager: int
    client: int
    bot: int

    @classmethod
    def free(cls) -> Ports:
        return cls(
            sip=free_port(host=PBX_HOST),
            manager=free_port(host=PBX_HOST),
            client=free_port(host=CLIENT_HOST),
            bot=free_port(host=BOT_HOST),
        )


def sipp_at(host: str, workdir: Path) -> Sipp:
    try:
        return Sipp(local_ip=host, workdir=workdir)
    except SippNotFoundError as missing:
        pytest.fail(str(missing))


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


def pjsip_conf(ports: Ports, mode: str = "peer") -> str:
    """What a real PBX already has around the recipe's endpoint: a trunk the
    client calls in on (identified by its address) and the manager's extension
    201; the endpoint itself as shipped, only the bot's address substituted."""
    recipe = RECIPE_PJSIP.read_text(encoding="utf-8")
    assert RECIPE_BOT_HOST in recipe and f"{RECIPE_BOT_HOST}:{RECIPE_BOT_PORT}" in recipe
    if mode == "register":
        recipe = register_mode(recipe)
    endpoint = recipe.replace(f"{RECIPE_BOT_HOST}:{RECIPE_BOT_PORT}", f"{BOT_HOST}:{ports.bot}")
    endpoint = endpoint.replace(RECIPE_BOT_HOST, BOT_HOST)
    return f"""[global]
type=global
endpoint_identifier_order=ip,username

[udp]
type=transport
protocol=udp
bind={PBX_HOST}:{ports.sip}

; the client's carrier: calls from its address land in the recipe's inbound
; context, and the bot's callbacks to clients leave through it
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
contact=sip:carrier@{CLIENT_HOST}:{ports.client}

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
contact=sip:{MANAGER}@{PBX_HOST}:{ports.manager}

{endpoint}
"""


async def start_asterisk(pbx: Asterisk, ports: Ports, mode: str = "peer") -> None:
    """Asterisk with the PBX above and the recipe's dialplan, included from the
    repository file itself (not one character differs from what users copy)."""
    pbx.write_config(
        {
            "pjsip.conf": pjsip_conf(ports, mode),
            "extensions.conf": f'[general]\nstatic=yes\n\n#include "{RECIPE}"\n',
        },
        rtp_ports=rtp_window(calls=8, host=PBX_HOST),
    )
    await pbx.start()


async def manager_phone(
    workdir: Path, scenario: str, ports: Ports, pcap: Path, calls: int = 1
) -> SippRun:
    """The manager's desk phone (SIPp UAS on extension 201), listening; it keys
    what `pcap` holds once it answers."""
    phone = await sipp_at(PBX_HOST, workdir).start(
        SCENARIOS / scenario,
        None,
        local_port=ports.manager,
        calls=calls,
        keys={"manager": MANAGER, "pcap": pcap},
        timeout_s=60,
        trace_msg=True,
    )
    await phone.listening()
    return phone


async def client_phone(workdir: Path, ports: Ports) -> SippRun:
    """The client's phone behind the trunk (SIPp UAS), listening: it answers and
    hangs up."""
    phone = await sipp_at(CLIENT_HOST, workdir).start(
        CB_SCENARIOS / "client_uas_hangup.xml",
        None,
        local_port=ports.client,
        timeout_s=60,
        trace_msg=True,
    )
    await phone.listening()
    return phone


def callback_bot(
    root: Path, ports: Ports, mode: str, webhooks: list[dict[str, Any]], **callbacks: Any
) -> Settings:
    """The bot as the recipe's `voicebot` endpoint, calling back through
    `voicebot-dialout` at any hour, at once, ringing extension 201."""
    rtp_min, rtp_max = rtp_window(calls=4, host=BOT_HOST)
    return Settings(
        sip={
            "mode": mode,
            "username": "voicebot",
            "password": PASSWORD,
            "server": PBX_HOST,
            "port": ports.sip,
            "bind_host": BOT_HOST,
            "bind_port": ports.bot,
            "rtp_port_min": rtp_min,
            "rtp_port_max": rtp_max,
            "allowed_peers": [f"{PBX_HOST}/32"],
        },
        storage={"database": root / "voicebot.db"},
        http={"host": "127.0.0.1", "port": 0, "api_token": TOKEN},
        webhooks={"endpoints": webhooks},
        callbacks=callbacks_section(
            targets=[MANAGER], first_delay_s=0, ring_timeout_s=10, **callbacks
        ),
    )


async def until_registered(app: VoicebotApp) -> None:
    def registered() -> bool:
        assert app.user_agent is not None and app.user_agent.registration is not None
        return app.user_agent.registration.state == "registered"

    await until(registered, timeout=10, what="the bot registered with Asterisk")


async def settled_job(http: aiohttp.ClientSession) -> dict[str, Any]:
    """The one callback job, once it has left `queued`/`dialling` (or logged an
    attempt: one read, as an attempt is logged while it is dialling)."""
    seen: list[dict[str, Any]] = []

    async def settled() -> bool:
        async with http.get("/api/v1/callbacks") as r:
            assert r.status == 200, await r.text()
            seen[:] = (await r.json())["callbacks"]
        return len(seen) == 1 and (
            seen[0]["state"] not in ("queued", "dialling")
            or (seen[0]["state"] == "queued" and bool(seen[0]["attempt_log"]))
        )

    await until(settled, timeout=40, what=lambda: seen)
    return seen[0]
