"""The call journal: the one module that owns the journal's SQL.

A categorization row is written when the call is answered (`in_progress`) and
finished when the menu saves (`confirmed` / `incomplete`), so a process killed
mid-call leaves a row that the next start marks `incomplete` instead of
losing the call. Finishing a confirmed categorization and enqueuing its
`call.categorized` webhook happen in one transaction (transactional outbox).

Writes from all calls are group-committed (group_commit.py): one transaction
and one trip to the database thread for whatever is queued, each call's write
in its own savepoint. Neither write may hang a call on a locked database:
each one retries with backoff until its deadline, then raises `JournalUnavailable`, and the caller
decides (the answer-time row is simply skipped, the final save goes to the
spool, see spool.py). `finish_call` carries the call's start too and is
idempotent, so it also creates a row the answer-time write never made, and
replaying it (from the spool, after a crash) never finishes a call twice nor
enqueues its webhook twice.

With a dispatcher running in the process (`deliver_with`), the webhook's
delivery rows are written already claimed (`in_flight`) in the save's own
transaction and handed to it once committed, so the POST leaves without a
claim statement of the dispatcher's first (webhooks/outbox.py,
`enqueue_claimed_sync`). Without one (start-up's spool replay, shutdown)
they are written `pending` for a dispatcher's pass.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from voicebot.journal.database import open_database
from voicebot.journal.group_commit import GroupCommit, JournalUnavailable
from voicebot.logs import get_logger
from webhooks import Claim, Endpoint, Outbox, enqueue_claimed_sync, enqueue_sync

__all__ = [
    "CallOutcome",
    "CallStart",
    "Categorization",
    "Journal",
    "JournalUnavailable",  # raised by the journal's writes (group_commit.py)
]

#: How long one save may keep retrying a locked / failing database.
DEFAULT_WRITE_DEADLINE_S = 5.0

Status = Literal["in_progress", "confirmed", "incomplete"]


@dataclass(frozen=True, slots=True)
class CallStart:
    call_id: str
    sip_call_id: str
    pbx_call_id: str | None
    manager: str | None
    client_number: str | None
    codec: str
    started_at: datetime


@dataclass(frozen=True, slots=True)
class CallOutcome:
    status: Literal["confirmed", "incomplete"]
    category_code: str | None
    category_name: str | None
    value: Decimal | None
    digits: str
    attempts: int
    end_reason: str
    ended_at: datetime


@dataclass(frozen=True, slots=True)
class Categorization:
    """One row of the journal, as read back."""

    call_id: str
    sip_call_id: str
    pbx_call_id: str | None
    manager: str | None
    client_number: str | None
    category_code: str | None
    category_name: str | None
    value: Decimal | None
    status: Status
    digits: str
    attempts: int
    codec: str | None
    end_reason: str | None
    started_at: str
    ended_at: str | None

    def categorized_event(self) -> dict[str, Any]:
        """`data` of the `call.categorized` webhook (DESIGN.md §4)."""
        category = (
            {"code": self.category_code, "name": self.category_name}
            if self.category_code is not None
            else None
        )
        value: int | float | None = None
        if self.value is not None:
            value = int(self.value) if self.value == self.value.to_integral() else float(self.value)
        return {
            "call_id": self.call_id,
            "sip_call_id": self.sip_call_id,
            "pbx_call_id": self.pbx_call_id,
            "manager": self.manager,
            "client_number": self.client_number,
            "category": category,
            "value": value,
            "status": self.status,
            "digits": self.digits,
            "started_at": self.started_at,
            "categorized_at": self.ended_at,
        }


_COLUMNS = ", ".join(f.name for f in fields(Categorization))


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _row(row: aiosqlite.Row) -> Categorization:
    data = dict(row)
    data["value"] = Decimal(data["value"]) if data["value"] is not None else None
    return Categorization(**data)


def _start_values(call: CallStart) -> tuple[str | None, ...]:
    """(call_id, sip_call_id, pbx_call_id, manager, client_number, codec, started_at)."""
    return (
        call.call_id,
        call.sip_call_id,
        call.pbx_call_id,
        call.manager,
        call.client_number,
        call.codec,
        _iso(call.started_at),
    )


def _insert_start(raw: sqlite3.Connection, call: CallStart) -> None:
    raw.execute(
        "INSERT OR IGNORE INTO categorizations (call_id, sip_call_id, pbx_call_id,"
        " manager, client_number, codec, started_at, status)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, 'in_progress')",
        _start_values(call),
    )


DeliverClaimed = Callable[[list[Claim]], None]


def _finish(
    raw: sqlite3.Connection,
    call: CallStart,
    outcome: CallOutcome,
    endpoints: Sequence[Endpoint],
    claimed: bool = False,
) -> list[str] | list[Claim]:
    """finish_call's transaction body, on the database's thread: the webhook
    ids enqueued, or with `claimed` the deliveries, claimed.

    One statement stores the outcome and reads the row back: the call's row
    is created with it if the answer-time write never made it, updated while
    it is `in_progress`, and left alone once finished (then no row comes
    back, and nothing is enqueued again). It was three (create if missing,
    update, read back): on a loaded bot each statement hands the GIL to the
    database's thread and back, and each hand-back can wait for a media
    phase, so statements are what a save's latency is made of.
    """
    row = raw.execute(
        "INSERT INTO categorizations (call_id, sip_call_id, pbx_call_id, manager,"
        " client_number, codec, started_at, status, category_code, category_name, value,"
        " digits, attempts, end_reason, ended_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (call_id) DO UPDATE SET status = excluded.status,"
        " category_code = excluded.category_code, category_name = excluded.category_name,"
        " value = excluded.value, digits = excluded.digits, attempts = excluded.attempts,"
        " end_reason = excluded.end_reason, ended_at = excluded.ended_at"
        " WHERE categorizations.status = 'in_progress'"
        f" RETURNING {_COLUMNS}",
        (
            *_start_values(call),
            outcome.status,
            outcome.category_code,
            outcome.category_name,
            str(outcome.value) if outcome.value is not None else None,
            outcome.digits,
            outcome.attempts,
            outcome.end_reason,
            _iso(outcome.ended_at),
        ),
    ).fetchone()
    if row is None or outcome.status != "confirmed":
        return []
    enqueue = enqueue_claimed_sync if claimed else enqueue_sync
    return enqueue(
        raw, "call.categorized", _row(row).categorized_event(), endpoints, now=outcome.ended_at
    )


class Journal:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        endpoints: Sequence[Endpoint] = (),
        *,
        write_deadline_s: float = DEFAULT_WRITE_DEADLINE_S,
        logger: Any = None,
    ) -> None:
        self._conn = conn
        self._endpoints = tuple(endpoints)
        self.write_deadline_s = write_deadline_s
        self._log = logger or get_logger()
        # One connection for every call: their writes are batched, one
        # transaction and one trip to the database thread per batch.
        self._writes = GroupCommit(conn, self._log)
        self._deliver: DeliverClaimed | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        endpoints: Sequence[Endpoint] = (),
        *,
        write_deadline_s: float = DEFAULT_WRITE_DEADLINE_S,
    ) -> Journal:
        # A short busy_timeout: the retry loop below, not SQLite, keeps the deadline.
        busy_ms = int(min(1000.0, max(50.0, write_deadline_s * 1000 / 4)))
        conn = await open_database(path, busy_timeout_ms=busy_ms)
        return cls(conn, endpoints, write_deadline_s=write_deadline_s)

    @property
    def connection(self) -> aiosqlite.Connection:
        return self._conn

    def deliver_with(self, deliver: DeliverClaimed | None) -> None:
        """From now on enqueue webhooks claimed and hand them to `deliver` once
        committed (the running dispatcher's `deliver_claimed`); None: enqueue
        them `pending` again (the dispatcher is stopping)."""
        self._deliver = deliver

    @property
    def delivers(self) -> bool:
        """Whether saves hand their webhooks to a dispatcher themselves (`deliver_with`)."""
        return self._deliver is not None

    @property
    def outbox(self) -> Outbox:
        """The webhook outbox, for the API's and operators' queries."""
        return Outbox(self._conn)

    @property
    def group_commit(self) -> GroupCommit:
        return self._writes

    async def close(self) -> None:
        await self._writes.drain()
        await self._conn.close()

    async def recover_interrupted(self, now: datetime) -> int:
        """Rows a killed process left `in_progress` become `incomplete`."""
        cursor = await self._conn.execute(
            "UPDATE categorizations SET status = 'incomplete', end_reason = 'interrupted',"
            " ended_at = ? WHERE status = 'in_progress'",
            (_iso(now),),
        )
        return cursor.rowcount

    async def start_call(self, call: CallStart, *, deadline_s: float | None = None) -> None:
        """The `in_progress` row. Raises `JournalUnavailable` after the deadline;
        `finish_call` creates the row then, so the call may go on without it."""
        budget = self.write_deadline_s if deadline_s is None else deadline_s
        await self._writes.write(
            "start", call.call_id, lambda raw: _insert_start(raw, call), budget
        )

    async def finish_call(
        self, call: CallStart, outcome: CallOutcome, *, deadline_s: float | None = None
    ) -> list[str]:
        """Store the outcome (creating the row if the answer-time write never
        made it); a confirmed one enqueues `call.categorized` in the same
        transaction. Idempotent: a call already finished is left as it is and
        nothing is enqueued again. Returns the webhook ids enqueued. Raises
        `JournalUnavailable` when it could not commit before the deadline.

        It commits with the other calls' writes of the moment, in one trip to
        the database's thread (group_commit.py): SQLite's write lock is held
        for the statements only, never across turns of the event loop."""
        budget = self.write_deadline_s if deadline_s is None else deadline_s
        deliver = self._deliver
        # With a dispatcher, claimed and handed over by the writer right after
        # COMMIT, even if this caller is cancelled meanwhile: claimed rows must
        # not wait for a restart.
        enqueued: list[str] | list[Claim] = await self._writes.write(
            "finish",
            call.call_id,
            lambda raw: _finish(raw, call, outcome, self._endpoints, claimed=deliver is not None),
            budget,
            after_commit=deliver,
        )
        return [e if isinstance(e, str) else e.webhook_id for e in enqueued]

    async def get(self, call_id: str) -> Categorization | None:
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM categorizations WHERE call_id = ?", (call_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return _row(row) if row is not None else None

    async def recent(self, limit: int = 50, status: Status | None = None) -> list[Categorization]:
        query = f"SELECT {_COLUMNS} FROM categorizations"
        params: tuple[Any, ...] = ()
        if status is not None:
            query += " WHERE status = ?"
            params = (status,)
        query += " ORDER BY started_at DESC LIMIT ?"
        async with self._conn.execute(query, (*params, limit)) as cursor:
            rows = await cursor.fetchall()
        return [_row(row) for row in rows]
