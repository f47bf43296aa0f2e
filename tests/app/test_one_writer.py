"""How the running app wires its database writers (docs/architecture.md, "One
writer for the file"): the call log and the webhook dispatcher write through
the journal's group commit, and saves hand their webhooks over claimed."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from tests.app.app_testkit import StartApp
from tests.polling import until
from tests.ports import free_port
from voicebot.journal import CallOutcome, CallStart

SECRET = "whsec_" + base64.b64encode(b"one-writer-test-secret-0123456789").decode()
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


async def test_saves_and_their_filings_and_webhooks_write_on_the_journals_connection(
    start_app: StartApp,
) -> None:
    closed = f"http://127.0.0.1:{free_port(udp=False)}/crm"  # refused: a quick failed attempt
    app = await start_app(webhooks={"endpoints": [{"url": closed, "secret": SECRET}]})
    assert app.journal is not None and app.call_log is not None
    assert app.journal.delivers
    writes = app.journal.group_commit
    own: list[str] = []
    await app.call_log.connection.set_trace_callback(own.append)
    before = writes.writes
    start = CallStart("call_w", "sip-w", "pbx-w", "201", None, "PCMU", T0)
    outcome = CallOutcome("confirmed", "1", "sale", None, "1#1", 1, "confirmed", T0)
    [webhook_id] = await app.journal.finish_call(start, outcome)
    filed = await app.call_log.record_categorization("call_w")
    assert filed is not None and filed.call.category_code == "1"
    assert writes.writes >= before + 2  # the save and the filing
    # the delivery (to a closed port) failed and was written back by the dispatcher
    deliveries = app.journal.outbox
    await until(
        lambda: _attempted(deliveries, webhook_id), timeout=10, what="the first attempt's outcome"
    )
    assert not [s for s in own if s.lstrip().split()[0].upper() in ("INSERT", "UPDATE")]
    assert writes.writes >= before + 3


async def _attempted(outbox: object, webhook_id: str) -> bool:
    [row] = await outbox.deliveries(webhook_id=webhook_id)  # type: ignore[attr-defined]
    return bool(row.attempts >= 1 and row.status != "in_flight")
