"""The call log's connection is shared by the API, the callbacks' journalling,
/metrics and the reports: a read one task has open must not fail another
task's write, and a BEGIN that fails must not leave the connection inside a
transaction. Real SQLite files in WAL mode; the second connection is another
component (the callback queue, the webhook dispatcher) committing meanwhile.

Found by bench/callbacks.py: POST /api/v1/calls/events answered 500
"database is locked" when the callback journalling read the call log while
the event's BEGIN IMMEDIATE ran, and the call log then refused every write."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiosqlite
import pytest

from voicebot.journal.call_events import CallEvent
from voicebot.journal.call_types import TypeRules
from voicebot.journal.calls import CallLog
from voicebot.journal.database import begin_immediate, open_database

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def missed(n: int) -> CallEvent:
    return CallEvent.model_validate(
        {
            "call_id": f"pbx-{n}",
            "direction": "inbound",
            "caller": f"+38044123456{n}",
            "callee": "+380441110000",
            "status": "missed",
            "started_at": T0 + timedelta(minutes=n),
            "ended_at": T0 + timedelta(minutes=n, seconds=20),
        }
    )


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[CallLog]:
    opened = await CallLog.open(tmp_path / "j.db", TypeRules.from_settings(30, 30))
    yield opened
    await opened.close()


@pytest.fixture
async def other(tmp_path: Path, log: CallLog) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_database(tmp_path / "j.db")
    yield conn
    await conn.close()


async def test_a_read_open_in_another_task_delays_a_write_instead_of_failing_it(
    log: CallLog, other: aiosqlite.Connection
) -> None:
    for n in range(3):
        await log.record_call_event(missed(n))
    async with log.connection.execute("SELECT id FROM calls ORDER BY id") as reading:
        assert await reading.fetchone() is not None  # the statement stays open
        # another connection commits: the open read's snapshot is now stale
        await other.execute("UPDATE calls SET updated_at = updated_at + 1")
        write = asyncio.create_task(log.record_call_event(missed(3)))
        done, _ = await asyncio.wait({write}, timeout=0.3)
        # it waits for the read (before: SQLITE_BUSY at once, a 500 upstream)
        assert not done, write.exception() if write.done() else None
    stored = await asyncio.wait_for(write, 5)
    assert stored.created and stored.call.pbx_call_id == "pbx-3"
    assert not log.connection.in_transaction
    assert (await log.record_call_event(missed(4))).created


async def test_a_begin_that_fails_leaves_no_transaction_behind(
    tmp_path: Path, other: aiosqlite.Connection
) -> None:
    conn = await open_database(tmp_path / "j.db", busy_timeout_ms=20)
    try:
        await other.execute("BEGIN IMMEDIATE")  # another component writes, long
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await begin_immediate(conn, retry_s=0.1)
        assert not conn.in_transaction
        await other.execute("COMMIT")
        await begin_immediate(conn)  # usable again, not "within a transaction"
        assert conn.in_transaction
        await conn.execute("ROLLBACK")
    finally:
        await conn.close()
