"""The one way to open the application's SQLite file.

`open_database()` is used by every process and component that touches the
file (the journal, the webhook dispatcher, the CLI): it sets the same PRAGMAs
everywhere and brings every schema up to date, so no caller can forget one or
open the file in another transaction mode.

PRAGMAs, and why:

- `journal_mode=WAL`: the dispatcher, the API and the CLI read while calls write.
- `synchronous=NORMAL`: in WAL mode a commit survives a killed process; a power
  cut may forget the last commits, never corrupt the file.
- `busy_timeout`: a writer waits this long for another writer before SQLite
  says "database is locked"; the journal retries on top of it (see store.py).
- `foreign_keys=ON`: the outbox's deliveries reference their message.
- autocommit (`isolation_level=None`): every transaction is an explicit
  `BEGIN IMMEDIATE`, so a write never has to upgrade a read snapshot (where
  SQLite answers SQLITE_BUSY at once instead of waiting).

One trip per transaction (`webhooks.sqlite_trip.write_in_one_trip`): every
aiosqlite call is a hop to the connection's thread and back through the event
loop, so a transaction of nine awaited statements held SQLite's write lock
for nine turns of a loop busy with 500 calls' media, and every other
connection to the file (the call log, the dispatcher, the callback queue)
slept in SQLite's busy handler meanwhile: at 300-500 calls a confirmed
categorization took seconds to reach its webhook. The hot writes therefore
run as one function on the connection's thread, `BEGIN IMMEDIATE` to
`COMMIT`, and hold the lock only for the statements themselves.

Migrations: every component that owns tables declares
`MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...]` (version, statements)
and records what it applied in its own `<component>_schema` table, one row
per version. One runner applies them all, each version in one transaction
with its bookkeeping row, so a process killed mid-migration leaves the
previous version intact.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import aiosqlite

import webhooks.schema
from voicebot.journal import migrations as journal_migrations

Migrations = Sequence[tuple[int, Sequence[str]]]

#: (component, its migrations), in the order they are applied.
SCHEMAS: tuple[tuple[str, Migrations], ...] = (
    ("journal", journal_migrations.MIGRATIONS),
    ("webhooks", webhooks.schema.MIGRATIONS),
)

DEFAULT_BUSY_TIMEOUT_MS = 5000

T = TypeVar("T")
#: How long `begin_immediate` keeps trying while SQLite answers BUSY at once.
BEGIN_RETRY_S = DEFAULT_BUSY_TIMEOUT_MS / 1000


async def begin_immediate(conn: aiosqlite.Connection, *, retry_s: float = BEGIN_RETRY_S) -> None:
    """`BEGIN IMMEDIATE` on a connection that several tasks share.

    busy_timeout covers another connection's write lock, but not a read
    statement of THIS connection still open in another task (between an
    `execute` and its cursor's close): when another connection has committed
    since that read began, SQLite answers SQLITE_BUSY at once, without waiting,
    and leaves the connection out of autocommit. So a failed BEGIN is rolled
    back, and a BUSY one is tried again shortly (the read ends within
    milliseconds) until `retry_s` has passed.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_s
    pause = 0.002
    while True:
        try:
            await conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.shield(conn.execute("ROLLBACK"))
            busy = (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
            if not busy or loop.time() + pause > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


class DatabaseError(Exception):
    """The database cannot be used. `str()` is one line naming the file and the
    problem, fit for an operator (no traceback is needed to act on it)."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"database {path}: {problem}")
        self.path = path
        self.problem = problem


def describe_sqlite_error(error: BaseException) -> str:
    """The operator's words for an error SQLite (or the OS under it) raised."""
    text = str(error)
    if "readonly" in text or "read-only" in text:
        return "the file (or its directory) is read-only; the bot must be able to write it"
    if "unable to open" in text:
        return "cannot open the file (missing directory or no permission)"
    if "disk is full" in text or "database or disk is full" in text:
        return "the disk is full"
    if "not a database" in text or "malformed" in text:
        return f"not a usable SQLite database ({text})"
    if "locked" in text or "busy" in text:
        return "locked by another process"
    return text


#: SQLite result codes that mean "not now" (another writer, the disk, the
#: file's mode), as opposed to a bug in a statement.
_UNAVAILABLE = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_READONLY",
    "SQLITE_FULL",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_PROTOCOL",
    "SQLITE_NOLFS",
)


def is_unavailable(error: sqlite3.Error) -> bool:
    """Whether a write failed because the database is unavailable (worth retrying,
    or spooling), rather than because the statement is wrong."""
    name = getattr(error, "sqlite_errorname", "") or ""
    if name:
        return name.startswith(_UNAVAILABLE)
    text = str(error)
    return any(word in text for word in ("locked", "busy", "readonly", "disk", "unable to open"))


def _check_path(path: Path) -> None:
    """Fail early, in words, on the paths SQLite would report as a bare errno."""
    parent = path.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise DatabaseError(
                    path, f"{ancestor} is a regular file, not a directory (storage.database)"
                )
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseError(
            path, f"cannot create directory {parent}: {error.strerror or error}"
        ) from None
    if path.exists():
        if not path.is_file():
            raise DatabaseError(path, "is not a regular file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise DatabaseError(path, "the file is read-only; the bot must be able to write it")
    if not os.access(parent, os.W_OK | os.X_OK):
        # SQLite writes its -wal and -shm files next to the database.
        raise DatabaseError(
            path, f"directory {parent} is not writable (SQLite needs it for its -wal file)"
        )


async def apply_migrations(
    conn: aiosqlite.Connection, component: str, migrations: Migrations
) -> int:
    """Bring one component's tables to its newest version; returns it."""
    if not component.isidentifier():
        raise ValueError(f"component name {component!r} must be an identifier")
    table = f"{component}_schema"
    newest = max((version for version, _ in migrations), default=0)
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
        async with conn.execute(f"SELECT MAX(version) FROM {table}") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current > newest:
            raise RuntimeError(
                f"the {component} schema is at version {current}, newer than this"
                f" voicebot knows ({newest}); upgrade voicebot"
            )
        for version, statements in migrations:
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(f"INSERT INTO {table} (version) VALUES (?)", (version,))
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    return newest


async def open_database(
    path: Path | str,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
) -> aiosqlite.Connection:
    """Open (creating it if needed) the SQLite file with the application's
    PRAGMAs and every schema migrated. Raises `DatabaseError` (one line) when
    the file cannot be used; never leaves a connection (and its thread) open
    behind an error."""
    path = Path(path)
    _check_path(path)
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
    except (sqlite3.Error, OSError) as error:
        raise DatabaseError(path, describe_sqlite_error(error)) from None
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys=ON")
        for component, migrations in SCHEMAS:
            await apply_migrations(conn, component, migrations)
    except (sqlite3.Error, OSError) as error:
        await conn.close()
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise DatabaseError(path, "the disk is full") from None
        raise DatabaseError(path, describe_sqlite_error(error)) from None
    except BaseException:
        await conn.close()
        raise
    return conn


def connector(
    path: Path | str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS
) -> Callable[[], Awaitable[aiosqlite.Connection]]:
    """`open_database` for this file, for components given a way to connect
    rather than a path (the webhook dispatcher)."""

    def connect() -> Awaitable[aiosqlite.Connection]:
        return open_database(path, busy_timeout_ms=busy_timeout_ms)

    return connect
