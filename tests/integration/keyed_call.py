"""The keyed call most integration tests place: SIPp as the manager's phone,
carrying CALLER's identity, keys KEYS (category 3 "existing order", value
1500, confirm); the journal row it must leave."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from tests.integration.conftest import target
from tests.sipp_harness.runner import Sipp, SippResult
from voicebot.app import VoicebotApp

#: the call identity SIPp puts in X-Call-ID / X-Client-Number / X-Manager
CALLER = {"pbx_call_id": "pbx-1700000000.7", "client_number": "+79990001122", "manager": "ivanov"}
KEYS = "3#1500#1"
SIPP_TIMEOUT_S = 40  # generous: the bot's BYE (or the caller's) ends every call long before


async def dtmf_call(
    sipp: Sipp,
    app: VoicebotApp,
    pcap: Path,
    *,
    scenario: str = "uac_dtmf",
    **keys: object,
) -> SippResult:
    return await sipp.arun_scenario(
        scenario,
        target(app),
        keys={**CALLER, "pcap": pcap, **keys},
        timeout_s=SIPP_TIMEOUT_S,
        trace_msg=True,
    )


def assert_confirmed_3_1500(row: dict[str, object], codec: str = "PCMU") -> None:
    assert row["status"] == "confirmed", row
    assert row["category_code"] == "3" and row["category_name"] == "existing order", row
    assert row["value"] is not None and Decimal(str(row["value"])) == Decimal(1500), row
    assert row["codec"] == codec, row
    assert row["end_reason"] == "confirmed", row
    assert row["ended_at"], row
