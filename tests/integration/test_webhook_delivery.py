"""A categorized call reaches the CRM: SIPp keys the menu over SIP INFO, the
bot stores the row and its outbox event in one transaction, and the real
dispatcher posts `call.categorized` to an aiohttp receiver that verifies the
Standard Webhooks signature with the public `standardwebhooks` library — after
answering 500 once, so the retry path is the one exercised."""

from __future__ import annotations

import json
from pathlib import Path

from tests.integration.conftest import MakeBot, finished, needs_sipp, target, wait_rows
from tests.integration.keyed_call import CALLER
from tests.polling import until
from tests.sipp_harness.runner import Sipp, build_info_scenario
from tests.webhooks.webhooks_testkit import SECRET, Receiver

KEYS = "3#1500*5#1"


@needs_sipp
async def test_categorized_call_is_delivered_signed_after_a_500(
    make_bot: MakeBot, sipp: Sipp, tmp_path: Path
) -> None:
    receiver = Receiver([SECRET])
    receiver.script = ["500"]
    await receiver.start()
    try:
        bot = await make_bot(
            webhooks={
                "endpoints": [
                    {"url": receiver.url, "secret": SECRET, "events": ["call.categorized"]}
                ],
                "retry_schedule_s": [0, 0.3, 1],
            }
        )
        scenario = tmp_path / "uac_info_keys.xml"
        build_info_scenario(KEYS, pause_ms=250, lead_in_ms=1000, path=scenario)
        result = await sipp.arun_scenario(scenario, target(bot), keys=CALLER, timeout_s=40)
        assert result.ok and result.successful_calls == 1, result.describe()
        (row,) = await wait_rows(bot, finished)
        await until(lambda: len(receiver.received) >= 2, 10, what="a retry after the 500")
    finally:
        await receiver.stop()

    attempts = receiver.received
    assert len(attempts) == 2, "one 500, then the retry"
    assert attempts[0].webhook_id == attempts[1].webhook_id, "same webhook-id on retry"
    delivered = attempts[1]
    assert delivered.verified
    event = json.loads(delivered.body)
    assert event["type"] == "call.categorized"
    data = event["data"]
    assert data["call_id"] == row["call_id"]
    assert data["pbx_call_id"] == CALLER["pbx_call_id"]
    assert data["client_number"] == CALLER["client_number"]
    assert data["manager"] == CALLER["manager"]
    assert data["category"] == {"code": "3", "name": "existing order"}
    assert data["value"] == 1500.5
    assert data["categorized_at"].endswith("Z")
