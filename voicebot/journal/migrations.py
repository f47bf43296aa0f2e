"""Versioned schema of the call journal.

Each entry is applied once, in order, inside one transaction together with
the bump of `journal_schema.version`, so a process killed mid-migration
leaves the previous version intact. Never edit a released migration; append.
"""

from __future__ import annotations

import aiosqlite

MIGRATIONS: tuple[str, ...] = (
    # 1: categorizations, one row per call handed to the post-call menu.
    """
    CREATE TABLE categorizations (
        call_id        TEXT PRIMARY KEY,
        sip_call_id    TEXT NOT NULL,
        pbx_call_id    TEXT,
        manager        TEXT,
        client_number  TEXT,
        category_code  TEXT,
        category_name  TEXT,
        value          TEXT,
        status         TEXT NOT NULL CHECK (status IN ('in_progress', 'confirmed', 'incomplete')),
        digits         TEXT NOT NULL DEFAULT '',
        attempts       INTEGER NOT NULL DEFAULT 0,
        codec          TEXT,
        end_reason     TEXT,
        started_at     TEXT NOT NULL,
        ended_at       TEXT
    );
    CREATE INDEX categorizations_started ON categorizations (started_at);
    CREATE INDEX categorizations_manager ON categorizations (manager, started_at);
    CREATE INDEX categorizations_pbx ON categorizations (pbx_call_id);
    """,
    # 2: the call log (every call the bot knows of: PBX events, CDR imports, menu
    # calls, callbacks) and the category catalogue the menu reads per call.
    # Times are Unix seconds (REAL): sortable, and cheap to bucket by hour.
    """
    CREATE TABLE calls (
        id                  INTEGER PRIMARY KEY,
        source              TEXT NOT NULL CHECK (source IN ('pbx', 'cdr', 'menu', 'callback')),
        pbx_call_id         TEXT UNIQUE,
        direction           TEXT CHECK (direction IN ('inbound', 'outbound', 'internal')),
        caller              TEXT,
        callee              TEXT,
        company_number      TEXT,
        client_number       TEXT,
        manager             TEXT,
        status              TEXT NOT NULL
                            CHECK (status IN ('answered', 'missed', 'busy', 'failed')),
        started_at          REAL NOT NULL,
        answered_at         REAL,
        ended_at            REAL,
        wait_s              REAL,
        talk_s              REAL,
        prev_inbound_gap_s  REAL,
        is_callback         INTEGER NOT NULL DEFAULT 0,
        categorization_id   TEXT UNIQUE,
        category_code       TEXT,
        category_name       TEXT,
        value               TEXT,
        recorded_at         REAL NOT NULL,
        updated_at          REAL NOT NULL
    );
    CREATE INDEX calls_time ON calls (started_at, id);
    CREATE INDEX calls_manager ON calls (manager, started_at, id);
    CREATE INDEX calls_client ON calls (client_number, started_at, id);
    CREATE INDEX calls_status ON calls (status, started_at, id);
    CREATE INDEX calls_category ON calls (category_code, started_at, id);
    CREATE TABLE categories (
        code        TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        value       TEXT,
        spam        INTEGER NOT NULL DEFAULT 0,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        deleted_at  REAL
    );
    """,
)


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the schema to the newest version; returns it.

    The connection must be in autocommit mode (isolation_level=None): every
    transaction here is explicit.
    """
    await conn.execute("CREATE TABLE IF NOT EXISTS journal_schema (version INTEGER NOT NULL)")
    async with conn.execute("SELECT version FROM journal_schema") as cursor:
        row = await cursor.fetchone()
    if row is None:
        await conn.execute("INSERT INTO journal_schema (version) VALUES (0)")
        current = 0
    else:
        current = int(row[0])
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {current} is newer than this voicebot knows"
            f" ({len(MIGRATIONS)}); upgrade voicebot"
        )
    for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, script.split(";")):
                await conn.execute(statement)
            await conn.execute("UPDATE journal_schema SET version = ?", (version,))
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
