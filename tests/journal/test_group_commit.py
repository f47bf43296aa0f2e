"""Group commit on a real SQLite file: many calls' saves in one transaction and
one trip, yet each save durable, failing or timing out on its own."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from tests.journal.db_probes import hold_write_lock, trips_to_the_database_thread
from tests.journal.test_journal import ENDPOINT, confirmed, start
from voicebot.journal import Journal
from voicebot.journal.database import open_database
from voicebot.journal.group_commit import GroupCommit, JournalUnavailable
from voicebot.logs import get_logger


async def test_saves_of_many_calls_commit_in_one_trip(tmp_path: Path) -> None:
    """Fifty managers confirm at once: one transaction, one trip to the
    database thread, and every call gets its own row and its own webhook."""
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT])
    trips = trips_to_the_database_thread(journal.connection)
    calls = [start(f"call_{i}") for i in range(50)]
    results = await asyncio.gather(*(journal.finish_call(c, confirmed()) for c in calls))
    assert trips[0] == 1
    assert (journal.group_commit.batches, journal.group_commit.writes) == (1, 50)
    await journal.close()
    assert all(len(ids) == 1 for ids in results)
    assert len({ids[0] for ids in results}) == 50
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute(
            "SELECT COUNT(*) FROM categorizations WHERE status = 'confirmed'"
        ).fetchone() == (50,)
        assert conn.execute("SELECT COUNT(*) FROM webhooks_deliveries").fetchone() == (50,)


async def test_a_write_that_fails_is_rolled_back_alone(tmp_path: Path) -> None:
    """A bug in one call's write (here a duplicate key after a first insert)
    undoes that write only and raises to that caller; its batch-mates commit."""
    conn = await open_database(tmp_path / "j.db")
    await conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    writes = GroupCommit(conn, get_logger())

    def insert(*keys: str) -> object:
        return lambda raw: [raw.execute("INSERT INTO t VALUES (?)", (k,)) for k in keys]

    results = await asyncio.gather(
        writes.write("finish", "a", insert("a"), 5.0),
        writes.write("finish", "b", insert("b1", "a"), 5.0),  # b1 goes in, then 'a' clashes
        writes.write("finish", "c", insert("c"), 5.0),
        return_exceptions=True,
    )
    assert writes.batches == 1
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert not isinstance(results[0], BaseException)
    assert not isinstance(results[2], BaseException)
    async with conn.execute("SELECT k FROM t ORDER BY k") as cursor:
        assert [row[0] for row in await cursor.fetchall()] == ["a", "c"]
    await conn.close()


async def test_a_locked_file_holds_each_write_to_its_own_deadline(tmp_path: Path) -> None:
    """Another process holds the lock for 1.5 s: the batch is retried; the save
    with a 0.3 s deadline gives up (its caller spools it), the one with 10 s
    commits once the lock is gone, and nothing half-written remains."""
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT], write_deadline_s=10)
    holder = hold_write_lock(tmp_path / "j.db", 1.5)
    short, long = await asyncio.gather(
        journal.finish_call(start("call_short"), confirmed(), deadline_s=0.3),
        journal.finish_call(start("call_long"), confirmed()),
        return_exceptions=True,
    )
    holder.join()
    assert isinstance(short, JournalUnavailable) and "locked" in str(short)
    assert isinstance(long, list) and len(long) == 1
    assert await journal.get("call_short") is None
    row = await journal.get("call_long")
    assert row is not None and row.status == "confirmed"
    await journal.close()


async def test_close_waits_for_queued_saves(tmp_path: Path) -> None:
    """Stopping the bot finishes the saves in flight (DESIGN.md: SIGTERM stops
    cleanly): what was queued before close is on disk after it."""
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT])
    saves = [
        asyncio.create_task(journal.finish_call(start(f"call_{i}"), confirmed())) for i in range(5)
    ]
    await asyncio.sleep(0)  # queued, not yet written
    await journal.close()
    assert all(len(ids) == 1 for ids in await asyncio.gather(*saves))
    with sqlite3.connect(tmp_path / "j.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM categorizations").fetchone() == (5,)


async def test_an_incomplete_save_in_a_batch_enqueues_nothing(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "j.db", [ENDPOINT])
    outcome = replace(confirmed(), status="incomplete", end_reason="remote_bye")
    done, skipped = await asyncio.gather(
        journal.finish_call(start("call_1"), confirmed()),
        journal.finish_call(start("call_2"), outcome),
    )
    await journal.close()
    assert len(done) == 1 and skipped == []


async def test_after_commit_runs_for_a_caller_cancelled_meanwhile(tmp_path: Path) -> None:
    """What must follow a commit (handing claimed webhooks to the dispatcher)
    is done by the writer, not the caller: a caller cancelled while its batch
    is on the database thread does not lose it."""
    conn = await open_database(tmp_path / "j.db")
    await conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    writes = GroupCommit(conn, get_logger())
    on_thread, release = threading.Event(), threading.Event()
    committed: list[object] = []

    def insert(raw: sqlite3.Connection) -> str:
        on_thread.set()
        release.wait(5)  # the batch is in the database thread when the caller goes
        raw.execute("INSERT INTO t VALUES ('a')")
        return "a"

    caller = asyncio.create_task(writes.write("finish", "a", insert, 5.0, committed.append))
    await asyncio.to_thread(on_thread.wait, 5)
    caller.cancel()
    release.set()
    await writes.drain()
    assert caller.cancelled()
    assert committed == ["a"]
    async with conn.execute("SELECT k FROM t") as cursor:
        assert [row[0] for row in await cursor.fetchall()] == ["a"]
    await conn.close()


async def test_a_write_alone_in_its_batch_that_fails_leaves_nothing_and_raises(
    tmp_path: Path,
) -> None:
    """A batch of one write runs without a savepoint: what the write did before
    it failed is rolled back with the transaction, the error reaches its caller,
    and the next write commits."""
    conn = await open_database(tmp_path / "j.db")
    await conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    writes = GroupCommit(conn, get_logger())

    def insert(*keys: str) -> object:
        return lambda raw: [raw.execute("INSERT INTO t VALUES (?)", (k,)) for k in keys]

    with pytest.raises(sqlite3.IntegrityError):
        await writes.write("finish", "a", insert("a1", "a2", "a1"), 5.0)
    await writes.write("finish", "b", insert("b"), 5.0)
    assert writes.batches == 1  # the failed one did not count as committed
    async with conn.execute("SELECT k FROM t ORDER BY k") as cursor:
        assert [row[0] for row in await cursor.fetchall()] == ["b"]
    await conn.close()
