"""Probes of the journal's database: trips to its thread, and another process's lock."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import aiosqlite


def trips_to_the_database_thread(conn: aiosqlite.Connection) -> list[int]:
    """Counts what is queued for the connection's thread: every aiosqlite
    statement, fetch and cursor close goes through `_execute`, each one a trip
    there and back through the event loop. The statements still run."""
    trips = [0]
    run = conn._execute

    async def counted(fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips[0] += 1
        return await run(fn, *args, **kwargs)

    conn._execute = counted  # type: ignore[method-assign]
    return trips


def hold_write_lock(path: Path, seconds: float) -> threading.Thread:
    """Another connection (as another process would) holds the write lock."""
    locked = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(5)
    return thread
