"""Versioned schema of the call journal.

The convention every component follows (see `voicebot.journal.database`):
`(version, statements)` pairs, applied once, in order, each version in one
transaction with its row in `journal_schema`. Never edit a released
migration; append.
"""

from __future__ import annotations

from voicebot.journal import rollups

MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    # 1: categorizations, one row per call handed to the post-call menu.
    (
        1,
        (
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
                status         TEXT NOT NULL
                               CHECK (status IN ('in_progress', 'confirmed', 'incomplete')),
                digits         TEXT NOT NULL DEFAULT '',
                attempts       INTEGER NOT NULL DEFAULT 0,
                codec          TEXT,
                end_reason     TEXT,
                started_at     TEXT NOT NULL,
                ended_at       TEXT
            )
            """,
            "CREATE INDEX categorizations_started ON categorizations (started_at)",
            "CREATE INDEX categorizations_manager ON categorizations (manager, started_at)",
            "CREATE INDEX categorizations_pbx ON categorizations (pbx_call_id)",
        ),
    ),
    # 2: the call log (every call the bot knows of: PBX events, CDR imports, menu
    # calls, callbacks) and the category catalogue the menu reads per call.
    # Times are Unix seconds (REAL): sortable, and cheap to bucket by hour.
    (
        2,
        (
            """
            CREATE TABLE calls (
                id                  INTEGER PRIMARY KEY,
                source              TEXT NOT NULL
                                    CHECK (source IN ('pbx', 'cdr', 'menu', 'callback')),
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
            )
            """,
            "CREATE INDEX calls_time ON calls (started_at, id)",
            "CREATE INDEX calls_manager ON calls (manager, started_at, id)",
            "CREATE INDEX calls_client ON calls (client_number, started_at, id)",
            "CREATE INDEX calls_status ON calls (status, started_at, id)",
            "CREATE INDEX calls_category ON calls (category_code, started_at, id)",
            """
            CREATE TABLE categories (
                code        TEXT PRIMARY KEY,
                name        TEXT NOT NULL,
                value       TEXT,
                spam        INTEGER NOT NULL DEFAULT 0,
                created_at  REAL NOT NULL,
                updated_at  REAL NOT NULL,
                deleted_at  REAL
            )
            """,
        ),
    ),
    # 3: the callback queue (voicebot/callbacks/queue.py): one job per client
    # number while open, the missed calls each job answers, and every attempt.
    # The partial unique index is what merges repeated misses: at most one
    # open job per number, whichever process inserts.
    (
        3,
        (
            """
            CREATE TABLE callback_jobs (
                id               INTEGER PRIMARY KEY,
                client_number    TEXT NOT NULL,
                raw_number       TEXT,
                dial             TEXT,
                state            TEXT NOT NULL
                                 CHECK (state IN ('queued', 'dialling', 'completed', 'not_needed',
                                                  'failed', 'cancelled', 'skipped')),
                reason           TEXT,
                source           TEXT NOT NULL CHECK (source IN ('pbx', 'sip', 'api', 'cli')),
                round            INTEGER NOT NULL DEFAULT 1,
                attempts         INTEGER NOT NULL DEFAULT 0,
                targets          TEXT,
                due_at           REAL,
                not_before       REAL,
                first_missed_at  REAL NOT NULL,
                missed_at        REAL NOT NULL,
                claimed_by       TEXT,
                lease_until      REAL,
                cancel_requested TEXT,
                created_at       REAL NOT NULL,
                updated_at       REAL NOT NULL,
                closed_at        REAL
            )
            """,
            "CREATE UNIQUE INDEX callback_jobs_open ON callback_jobs (client_number)"
            " WHERE state IN ('queued', 'dialling')",
            "CREATE INDEX callback_jobs_due ON callback_jobs (state, due_at, id)",
            "CREATE INDEX callback_jobs_created ON callback_jobs (created_at, id)",
            "CREATE INDEX callback_jobs_number ON callback_jobs (client_number, created_at, id)",
            """
            CREATE TABLE callback_missed_calls (
                id          INTEGER PRIMARY KEY,
                job_id      INTEGER NOT NULL REFERENCES callback_jobs (id),
                call_id     INTEGER UNIQUE,
                pbx_call_id TEXT,
                missed_at   REAL NOT NULL
            )
            """,
            "CREATE INDEX callback_missed_calls_job ON callback_missed_calls (job_id, missed_at)",
            """
            CREATE TABLE callback_attempts (
                id            INTEGER PRIMARY KEY,
                job_id        INTEGER NOT NULL REFERENCES callback_jobs (id),
                round         INTEGER NOT NULL,
                client_number TEXT NOT NULL,
                targets       TEXT NOT NULL,
                claimed_by    TEXT NOT NULL,
                started_at    REAL NOT NULL,
                ended_at      REAL,
                outcome       TEXT,
                target        TEXT,
                sip_status    INTEGER,
                talk_s        REAL,
                client_rung   INTEGER NOT NULL DEFAULT 0,
                detail        TEXT
            )
            """,
            "CREATE INDEX callback_attempts_job ON callback_attempts (job_id, id)",
            "CREATE INDEX callback_attempts_number ON callback_attempts"
            " (client_number, started_at)",
        ),
    ),
    # 4: indexes for the reports at a million calls (bench/journal.py prints
    # the plans and the latency with and without them). Without them the
    # unprocessed test probed every answered call after a miss (52 s for a week
    # at 1 M calls), and every report read whole rows where an index suffices.
    (
        4,
        (
            # summary, coverage: index-only over the period.
            "CREATE INDEX calls_report ON calls (started_at, direction, status, manager,"
            " category_code, wait_s, talk_s)",
            # categories: only the categorized calls, index-only.
            "CREATE INDEX calls_categorized ON calls (started_at, category_code, manager, value,"
            " category_name) WHERE category_code IS NOT NULL",
            # hourly: grouped in index order, no sort (the expression is
            # reports.BUCKET_EXPRESSION, character for character).
            "CREATE INDEX calls_buckets ON calls"
            " (CAST(started_at / 900 AS INTEGER), started_at, direction, status, manager)",
            # unprocessed: "an answered call with this client after this one".
            "CREATE INDEX calls_client_status ON calls (client_number, started_at, status)",
            # missed: only the missed rows, in time order.
            "CREATE INDEX calls_missed ON calls (started_at, client_number, manager)"
            " WHERE direction = 'inbound' AND status != 'answered'",
        ),
    ),
    # 5: per-day and per-quarter-hour rollups kept by triggers, and the
    # maintained `unprocessed` flag, so a report over a year of a million calls
    # sums a few hundred rows per day instead of reading a million index
    # entries (voicebot/journal/rollups.py says how, bench/journal.py how fast).
    # Built here from the calls already there. The hour x weekday report now
    # reads call_quarters, so migration 4's calls_buckets index goes.
    (5, (*rollups.MIGRATION, "DROP INDEX IF EXISTS calls_buckets")),
)
