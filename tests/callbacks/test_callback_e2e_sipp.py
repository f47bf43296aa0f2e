"""A callback end to end through the running app: the explicit request over
HTTP queues a job, the scheduler claims it, the app's own SIP dialler
(`build_dialler`) rings SIPp as the manager's phone, the manager keys 1
(RFC 4733), the bot REFERs, SIPp's NOTIFY sipfrag says `SIP/2.0 200 OK`, and
the job ends `completed` with a signed `callback.completed` webhook at a real
aiohttp receiver (verified with the `standardwebhooks` library)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.callbacks.callbacks_testkit import TOKEN, api_session, callbacks_section
from tests.polling import until
from tests.ports import rtp_window
from tests.sipp_harness.pcap import write_dtmf_pcap
from tests.sipp_harness.runner import Sipp, can_play_pcap
from tests.webhooks.webhooks_testkit import SECRET, Receiver
from voicebot.app import VoicebotApp
from voicebot.settings import Settings

SCENARIOS = Path(__file__).resolve().parent / "scenarios"

pytestmark = [
    pytest.mark.sipp,
    pytest.mark.skipif(not can_play_pcap(), reason="play_pcap_audio needs a raw socket (root)"),
]


async def test_manager_keys_1_refer_completes_the_job_with_a_signed_webhook(
    tmp_path: Path, sipp: Sipp, receiver: Receiver
) -> None:
    pcap = write_dtmf_pcap(tmp_path / "one.pcap", "1", lead_in_ms=300)
    phone = await sipp.start(
        SCENARIOS / "pbx_answer_refer.xml",
        None,
        keys={"pcap": pcap, "frag": "200 OK"},
        timeout_s=40,
    )
    await phone.listening()
    low, high = rtp_window(calls=4)
    settings = Settings(
        sip={
            "mode": "peer",
            "bind_port": 0,
            "server": "127.0.0.1",
            "port": phone.local_port,
            "rtp_port_min": low,
            "rtp_port_max": high,
        },
        storage={"database": tmp_path / "voicebot.db"},
        http={"port": 0, "api_token": TOKEN},
        webhooks={
            "endpoints": [{"url": receiver.url, "secret": SECRET, "events": ["callback.*"]}],
        },
        callbacks=callbacks_section(first_delay_s=0, ring_timeout_s=5, dial_template="{national}"),
    )
    app = VoicebotApp(settings)
    await app.start()
    try:
        async with api_session(app) as http:
            async with http.post("/api/v1/callbacks", json={"number": "+380441234567"}) as r:
                assert r.status == 201, await r.text()

            async def job() -> dict[str, Any]:
                async with http.get("/api/v1/callbacks") as r:
                    [one] = (await r.json())["callbacks"]
                    return dict(one)

            async def completed() -> bool:
                return (await job())["state"] == "completed"

            await until(completed, timeout=20)
            done = await job()
        result = await phone.wait()
        assert result.ok, result.describe()
        assert f"REFER to sip:0441234567@127.0.0.1:{phone.local_port}" in result.logs_text
        await receiver.wait_for_event("callback.completed", timeout=10)
    finally:
        phone.kill()
        await app.stop()
    [attempt] = done["attempt_log"]
    assert (attempt["outcome"], attempt["target"], attempt["sip_status"]) == (
        "completed",
        "201",
        200,
    )
    [hook] = receiver.events("callback.completed")
    assert hook["data"]["client_number"] == "+380441234567"
    assert hook["data"]["state"] == "completed" and hook["data"]["outcome"] == "completed"
