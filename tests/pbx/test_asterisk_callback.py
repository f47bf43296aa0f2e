"""A callback through a real Asterisk 22 and the recipe (config/pbx/): the
bot is the recipe's `voicebot` endpoint, dials the manager's extension 201
through `voicebot-dialout`, the manager keys 1 (RFC 4733), the bot REFERs
the manager to the client's number, Asterisk blind-transfers (the recipe's
`allow_transfer=yes`) and dials the client through the trunk, the client
answers, and the job ends `completed`.

Hosts on loopback as tests/pbx/recipe.py says: Asterisk and the manager's
phone on 127.0.0.1, the client behind the trunk on 127.0.0.2, the bot on
127.0.0.3.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.callbacks.callbacks_testkit import api_session
from tests.pbx import recipe
from tests.pbx.asterisk import Asterisk
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import can_play_pcap
from voicebot.app import VoicebotApp

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.asterisk,
    pytest.mark.skipif(not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root)"),
]


@pytest.mark.parametrize("mode", ["peer", "register"])
async def test_manager_first_refer_through_asterisk_completes(
    asterisk: Asterisk, ports: recipe.Ports, tmp_path: Path, mode: str
) -> None:
    """Peer mode: Asterisk knows the bot by its address. Register mode: the bot
    registers as the recipe's `voicebot` extension, and Asterisk challenges its
    INVITE (401), which the bot answers with credentials."""
    await recipe.start_asterisk(asterisk, ports, mode)
    pcap = write_dtmf_pcap(tmp_path / "one.pcap", "1", lead_in_ms=1000, with_audio=True)
    manager = await recipe.manager_phone(tmp_path / "manager", "manager_uas.xml", ports, pcap)
    client = await recipe.client_phone(tmp_path / "client", ports)
    app = VoicebotApp(recipe.callback_bot(tmp_path, ports, mode, webhooks=[]))
    await app.start()
    try:
        if mode == "register":
            await recipe.until_registered(app)
        async with api_session(app) as http:
            async with http.post("/api/v1/callbacks", json={"number": recipe.CLIENT_NUMBER}) as r:
                assert r.status == 201, await r.text()
            done = await recipe.settled_job(http)
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
        recipe.MANAGER,
        200,
    )
    # Asterisk dialled the client through the trunk, the number as the bot asked
    assert f"INVITE sip:{recipe.CLIENT_NUMBER}@" in answered.messages_log_text
