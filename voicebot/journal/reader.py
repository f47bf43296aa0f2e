"""The HTTP API's own read connection to the journal (issue 6 item 10).

The call log's reads for the API (`GET /api/v1/calls`, the reports, the
dashboard, the /metrics tally) go through a second SQLite connection, with
its own aiosqlite worker thread, instead of the connection the call log
writes on:

- A report over a long period is one SQLite statement that runs for 0.2 s
  at 100 000 calls and seconds at a million. On the writing connection, every
  PBX event and every menu categorization queued behind it (aiosqlite runs
  one connection's statements one after another). On its own connection, in
  WAL mode, a read never waits for a write nor a write for a read.
- That statement runs with the GIL released, so it does not hold the event
  loop; but it keeps a core busy, and on a small machine (2 cores, here
  shared with the HTTP clients) the kernel then shares the other core between
  the event loop and everything else. `bench/api_isolation.py` profiled with
  py-spy: under 200 clients, the loop spent its time in media ticks made
  slower, not in long HTTP callbacks. So the reader's thread runs at a lower
  CPU priority (`READER_NICENESS` above the process's, Linux per-thread nice):
  when both want a core, the kernel runs the media clock first, and the report
  takes what is left. The thread holds the GIL only between SQLite steps, to
  build each row, so it never keeps the loop waiting for long.

The connection is `query_only`: a write through it is an error, not a
second writer. It opens after `open_database` has created and migrated the
file (the call log's writing connection does that first).
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from pathlib import Path

import aiosqlite

from voicebot.journal.database import DEFAULT_BUSY_TIMEOUT_MS, DatabaseError, describe_sqlite_error

#: How much nicer than the process the reader's thread is (0-19 on Linux).
READER_NICENESS = 10


def lower_thread_priority(niceness: int) -> None:
    """Make the calling thread `niceness` nicer than it is (Linux: nice is per
    thread). Elsewhere, or if the OS refuses, the thread keeps its priority:
    the reader still never queues the writes."""
    if sys.platform != "linux" or niceness <= 0:
        return
    thread = threading.get_native_id()
    try:
        current = os.getpriority(os.PRIO_PROCESS, thread)
        os.setpriority(os.PRIO_PROCESS, thread, min(19, current + niceness))
    except OSError:
        return


async def open_reader(
    path: Path | str,
    *,
    niceness: int = READER_NICENESS,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> aiosqlite.Connection:
    """A read-only (`query_only`) connection to the journal's file whose
    worker thread runs `niceness` nicer. Raises `DatabaseError` (one line)."""
    path = Path(path)

    def connect() -> sqlite3.Connection:
        # Runs in the connection's own worker thread, first thing.
        lower_thread_priority(niceness)
        return sqlite3.connect(path, isolation_level=None)

    try:
        conn = await aiosqlite.Connection(connect, iter_chunk_size=64)
    except (sqlite3.Error, OSError) as error:
        raise DatabaseError(path, describe_sqlite_error(error)) from None
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        await conn.execute("PRAGMA query_only=ON")
    except (sqlite3.Error, OSError) as error:
        await conn.close()
        raise DatabaseError(path, describe_sqlite_error(error)) from None
    except BaseException:
        await conn.close()
        raise
    return conn
