"""A SQLite transaction in one trip to aiosqlite's thread.

Every aiosqlite call is a hop to the connection's thread and back through the
event loop; under load (an event loop busy with hundreds of calls' media)
a transaction of several awaited statements held SQLite's write lock for as
many turns of the loop. These run one function of the plain sqlite3
connection on that thread instead. Here, below both, because the webhook
dispatcher (this package) and the application's journal
(voicebot/journal/database.py explains the trips) write the same way.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import aiosqlite

T = TypeVar("T")


async def run_on_thread(conn: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run `work` with the plain sqlite3 connection on aiosqlite's own thread:
    one trip there and back, however many statements `work` runs.

    aiosqlite has no public call for this; `_execute` is what its own
    `execute` uses (queue a function for the thread, await its future), and
    `_conn` is read on that thread, where the connection lives.
    """

    def call() -> T:
        return work(conn._conn)

    result: T = await conn._execute(call)  # type: ignore[no-untyped-call, unused-ignore]
    return result


async def write_in_one_trip(
    conn: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]
) -> T:
    """`work` as one `BEGIN IMMEDIATE` ... `COMMIT` transaction, in one trip
    to the connection's thread; rolled back there if it raises. The caller
    must not have a transaction of its own open on `conn` (it would be an
    error to BEGIN inside it): use it under the lock that serialises the
    connection's other writers."""

    def transaction(raw: sqlite3.Connection) -> T:
        try:
            # Inside the try: a BEGIN that fails (SQLITE_BUSY at once, see
            # `begin_immediate`) can leave the connection out of autocommit.
            raw.execute("BEGIN IMMEDIATE")
            result = work(raw)
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    raw.execute("ROLLBACK")
            raise
        return result

    return await run_on_thread(conn, transaction)
