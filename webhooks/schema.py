"""The outbox tables and their migrations.

webhooks owns its tables in the application's SQLite file and versions them
on its own (`webhooks_schema`), so the journal's migrations and ours never
have to be ordered against each other.

Times are stored as Unix seconds (REAL, UTC): they must survive a restart,
so they come from the wall clock, never from a monotonic one.

    webhooks_messages        one row per event: the webhook-id, type and the
                             exact body bytes that are signed on every attempt
    webhooks_deliveries      one row per (message, endpoint URL): status
                             pending → in_flight → delivered | failed (dead
                             letter), attempts, next_attempt_at, last outcome
    webhooks_endpoint_state  endpoints a receiver switched off with 410 Gone
"""

from __future__ import annotations

import aiosqlite

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        1,
        (
            """
            CREATE TABLE webhooks_messages (
                id          TEXT PRIMARY KEY,
                event_type  TEXT NOT NULL,
                body        TEXT NOT NULL,
                created_at  REAL NOT NULL
            )
            """,
            """
            CREATE TABLE webhooks_deliveries (
                id               INTEGER PRIMARY KEY,
                message_id       TEXT NOT NULL
                                 REFERENCES webhooks_messages(id) ON DELETE CASCADE,
                endpoint_url     TEXT NOT NULL,
                status           TEXT NOT NULL DEFAULT 'pending'
                                 CHECK (status IN ('pending', 'in_flight', 'delivered', 'failed')),
                attempts         INTEGER NOT NULL DEFAULT 0,
                next_attempt_at  REAL,
                last_attempt_at  REAL,
                last_status      INTEGER,
                last_error       TEXT,
                delivered_at     REAL,
                failed_at        REAL,
                created_at       REAL NOT NULL,
                UNIQUE (message_id, endpoint_url)
            )
            """,
            """
            CREATE INDEX webhooks_deliveries_due
                ON webhooks_deliveries (status, endpoint_url, next_attempt_at)
            """,
            """
            CREATE INDEX webhooks_deliveries_message ON webhooks_deliveries (message_id)
            """,
            """
            CREATE TABLE webhooks_endpoint_state (
                url              TEXT PRIMARY KEY,
                disabled_at      REAL,
                disabled_reason  TEXT
            )
            """,
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'webhooks_schema'"
    ) as cursor:
        if await cursor.fetchone() is None:
            return 0
    async with conn.execute("SELECT MAX(version) FROM webhooks_schema") as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


async def ensure_schema(conn: aiosqlite.Connection) -> int:
    """Apply missing migrations; idempotent, safe when several processes start
    at once (BEGIN IMMEDIATE serialises them). Must be called outside a
    transaction, typically right after opening the connection. Returns the
    schema version."""
    if conn.in_transaction:
        raise RuntimeError("ensure_schema must run outside a transaction (commit first)")
    if await schema_version(conn) >= SCHEMA_VERSION:
        return SCHEMA_VERSION
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS webhooks_schema (version INTEGER NOT NULL)")
        current = await schema_version(conn)
        for version, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO webhooks_schema (version) VALUES (?)", (version,))
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise
    return SCHEMA_VERSION


async def configure_connection(conn: aiosqlite.Connection, busy_timeout_ms: int = 5000) -> None:
    """WAL so the dispatcher's reads never block the journal's writes;
    busy_timeout so two writers wait for each other instead of failing.
    synchronous=NORMAL is enough here: in WAL mode it survives a killed process,
    and a power cut can at worst forget a "delivered" mark, which is a duplicate
    (allowed, same webhook-id), never a loss; the enqueue itself is committed on
    the caller's connection under the caller's settings."""
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    await conn.execute("PRAGMA synchronous=NORMAL")
    await conn.execute("PRAGMA foreign_keys=ON")
