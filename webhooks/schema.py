"""The outbox tables and their migrations.

webhooks owns its tables in the application's SQLite file and versions them
on its own (`webhooks_schema`), so the journal's migrations and ours never
have to be ordered against each other. It declares them here as data,
`(version, statements)` pairs; it never opens the database nor runs them: the
application's one `open_database()` (voicebot.journal.database) does, with the
same PRAGMAs for every connection.

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
