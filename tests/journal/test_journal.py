"""The journal on a real SQLite file: migrations, the in_progress → confirmed /
incomplete life of a row, the transactional outbox, crash recovery."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.journal.db_probes import hold_write_lock, trips_to_the_database_thread
from voicebot.journal import CallOutcome, CallStart, Journal
from voicebot.journal.migrations import MIGRATIONS
from voicebot.journal.store import JournalUnavailable
from webhooks import Endpoint

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 20, 10, 1, 30, tzinfo=UTC)
ENDPOINT = Endpoint(url="http://127.0.0.1:9/hook", secrets=["whsec_dGVzdHNlY3JldA=="], events=["*"])


def start(call_id: str = "call_1") -> CallStart:
    return CallStart(
        call_id=call_id,
        sip_call_id="abc@pbx",
        pbx_call_id="1700000000.42",
        manager="201",
        client_number="+380441234567",
        codec="PCMA",
        started_at=T0,
    )


def confirmed(value: Decimal | None = Decimal("1500.50")) -> CallOutcome:
    return CallOutcome(
        status="confirmed",
        category_code="3",
        category_name="existing order",
        value=value,
        digits="3#1500*50#1",
        attempts=1,
        end_reason="confirmed",
        ended_at=T1,
    )


async def test_schema_versioned_and_wal(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db")
    await journal.close()
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT MAX(version) FROM journal_schema").fetchone()[0] == len(
            MIGRATIONS
        )
    # Reopening applies nothing twice.
    journal = await Journal.open(tmp_path / "j.db")
    await journal.close()


async def test_confirmed_row_and_its_webhook_commit_together(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT])
    await journal.start_call(start())
    ids = await journal.finish_call(start("call_1"), confirmed())
    row = await journal.get("call_1")
    await journal.close()
    assert row is not None
    assert row.status == "confirmed"
    assert row.value == Decimal("1500.50")
    assert row.category_name == "existing order"
    assert len(ids) == 1
    with sqlite3.connect(tmp_path / "j.db") as conn:
        body = conn.execute(
            "SELECT body FROM webhooks_messages WHERE id = ?", (ids[0],)
        ).fetchone()[0]
    event = json.loads(body)
    assert event["type"] == "call.categorized"
    data = event["data"]
    assert data["call_id"] == "call_1"
    assert data["pbx_call_id"] == "1700000000.42"
    assert data["manager"] == "201"
    assert data["client_number"] == "+380441234567"
    assert data["category"] == {"code": "3", "name": "existing order"}
    assert data["value"] == 1500.5
    assert data["categorized_at"] == "2026-11-20T10:01:30Z"


async def test_incomplete_row_fires_no_categorized_webhook(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT])
    await journal.start_call(start())
    # category 3 keyed, then the caller hung up while keying the value
    outcome = replace(confirmed(None), status="incomplete", digits="3#15", end_reason="remote_bye")
    assert await journal.finish_call(start("call_1"), outcome) == []
    row = await journal.get("call_1")
    await journal.close()
    assert row is not None and row.status == "incomplete" and row.digits == "3#15"


async def test_failed_enqueue_rolls_back_the_row(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT])
    await journal.start_call(start())
    await journal.connection.execute("DROP TABLE webhooks_deliveries")
    with pytest.raises(sqlite3.OperationalError):
        await journal.finish_call(start("call_1"), confirmed())
    row = await journal.get("call_1")
    await journal.close()
    assert row is not None and row.status == "in_progress", "row and event commit together"


async def test_interrupted_calls_become_incomplete(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db")
    await journal.start_call(start("call_a"))
    await journal.start_call(start("call_b"))
    await journal.finish_call(start("call_b"), confirmed())
    # The process dies here: call_a stays in_progress on disk.
    await journal.close()
    journal = await Journal.open(tmp_path / "j.db")
    assert await journal.recover_interrupted(T1) == 1
    row = await journal.get("call_a")
    other = await journal.get("call_b")
    await journal.close()
    assert row is not None and row.status == "incomplete" and row.end_reason == "interrupted"
    assert other is not None and other.status == "confirmed"


async def test_whole_number_value_is_an_integer_in_json(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db")
    await journal.start_call(start())
    await journal.finish_call(start("call_1"), confirmed(Decimal("1500")))
    row = await journal.get("call_1")
    recent = await journal.recent(status="confirmed")
    await journal.close()
    assert row is not None and row.categorized_event()["value"] == 1500
    assert [r.call_id for r in recent] == ["call_1"]


async def test_a_locked_database_is_retried_until_it_frees(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT], write_deadline_s=10)
    holder = hold_write_lock(tmp_path / "j.db", 1.5)
    began = time.monotonic()
    ids = await journal.finish_call(start(), confirmed())
    waited = time.monotonic() - began
    holder.join()
    row = await journal.get("call_1")
    await journal.close()
    assert waited >= 1.0, "committed while another process held the lock?"
    assert row is not None and row.status == "confirmed" and len(ids) == 1


async def test_a_database_locked_past_the_deadline_is_unavailable(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT], write_deadline_s=0.5)
    holder = hold_write_lock(tmp_path / "j.db", 2.0)
    with pytest.raises(JournalUnavailable, match="locked"):
        await journal.finish_call(start(), confirmed())
    holder.join()
    assert await journal.get("call_1") is None  # nothing half-written
    await journal.close()


async def test_finishing_twice_stores_once_and_enqueues_once(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT])
    # No answer-time row (the database was locked then): finish creates it.
    first = await journal.finish_call(start(), confirmed())
    again = await journal.finish_call(start(), confirmed(Decimal("1")))
    row = await journal.get("call_1")
    await journal.close()
    assert len(first) == 1 and again == []
    assert row is not None and row.value == Decimal("1500.50")
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM webhooks_messages").fetchone()[0] == 1


async def test_a_save_is_one_trip_to_the_database_thread(tmp_path: Path) -> None:
    """A confirmed save (row, read-back, outbox message and delivery) is one
    transaction run in one trip: SQLite's write lock is never held while the
    event loop, busy with every call's media, gets round to the next statement."""
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT])
    trips = trips_to_the_database_thread(journal.connection)
    await journal.start_call(start())
    assert trips[0] == 1
    ids = await journal.finish_call(start("call_1"), confirmed())
    assert trips[0] == 2
    await journal.close()
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute("SELECT status FROM categorizations").fetchall() == [("confirmed",)]
        assert conn.execute("SELECT message_id FROM webhooks_deliveries").fetchall() == [(ids[0],)]


async def test_a_confirmed_save_is_five_statements(tmp_path: Path) -> None:
    """On a loaded bot every statement of a save hands the GIL to the database's
    thread and back, and each hand-back can wait for a media phase: a save is
    BEGIN, one statement that stores the outcome and reads the row back, the
    outbox message, its delivery, COMMIT (it was nine: a savepoint around it,
    create-if-missing, update and read back)."""
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT])
    await journal.start_call(start())
    statements: list[str] = []
    await journal.connection._execute(  # type: ignore[no-untyped-call]
        lambda: journal.connection._conn.set_trace_callback(statements.append)
    )
    ids = await journal.finish_call(start("call_1"), confirmed())
    await journal.connection._execute(  # type: ignore[no-untyped-call]
        lambda: journal.connection._conn.set_trace_callback(None)
    )
    row = await journal.get("call_1")
    await journal.close()
    assert [s.split(" (")[0].split(" SET")[0] for s in statements] == [
        "BEGIN IMMEDIATE",
        "INSERT INTO categorizations",
        "INSERT INTO webhooks_messages",
        "INSERT INTO webhooks_deliveries",
        "COMMIT",
    ]
    assert len(ids) == 1
    assert row is not None and row.status == "confirmed" and row.value == Decimal("1500.50")
