"""The call journal: the one module that owns the journal's SQL.

A categorization row is written when the call is answered (`in_progress`) and
finished when the menu saves (`confirmed` / `incomplete`), so a process killed
mid-call leaves a row that the next start marks `incomplete` instead of
losing the call. Finishing a confirmed categorization and enqueuing its
`call.categorized` webhook happen in one transaction (transactional outbox).

Neither write may hang a call on a locked database: each one retries with
backoff until its deadline, then raises `JournalUnavailable`, and the caller
decides (the answer-time row is simply skipped, the final save goes to the
spool, see spool.py). `finish_call` carries the call's start too and is
idempotent, so it also creates a row the answer-time write never made, and
replaying it (from the spool, after a crash) never finishes a call twice nor
enqueues its webhook twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from voicebot.journal.database import describe_sqlite_error, is_unavailable, open_database
from voicebot.logs import get_logger
from webhooks import Endpoint, Outbox, enqueue

T = TypeVar("T")

#: How long one save may keep retrying a locked / failing database.
DEFAULT_WRITE_DEADLINE_S = 5.0

Status = Literal["in_progress", "confirmed", "incomplete"]


class JournalUnavailable(Exception):
    """A write did not commit before its deadline (locked, read-only, disk full)."""


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
        # One connection is shared by every call: finish_call's transaction spans
        # several awaits, so writes are serialized or a second call's BEGIN (or
        # its INSERT) would land inside the first call's transaction.
        self._write_lock = asyncio.Lock()

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

    @property
    def outbox(self) -> Outbox:
        """The webhook outbox, for the API's and operators' queries."""
        return Outbox(self._conn)

    async def close(self) -> None:
        await self._conn.close()

    async def recover_interrupted(self, now: datetime) -> int:
        """Rows a killed process left `in_progress` become `incomplete`."""
        cursor = await self._conn.execute(
            "UPDATE categorizations SET status = 'incomplete', end_reason = 'interrupted',"
            " ended_at = ? WHERE status = 'in_progress'",
            (_iso(now),),
        )
        return cursor.rowcount

    async def _retrying(
        self, what: str, call_id: str, op: Callable[[], Awaitable[T]], deadline_s: float | None
    ) -> T:
        """Run `op` under the write lock, retrying SQLite's operational errors
        (locked, read-only, disk full, I/O) with backoff until the deadline."""
        budget = self.write_deadline_s if deadline_s is None else deadline_s
        deadline = time.monotonic() + budget
        delay = 0.05
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            try:
                await asyncio.wait_for(self._write_lock.acquire(), max(remaining, 0.001))
            except TimeoutError:
                raise JournalUnavailable(
                    f"{what}: the journal stayed busy with other writes for {budget:g} s"
                ) from None
            try:
                return await op()
            except sqlite3.OperationalError as error:
                if not is_unavailable(error):
                    raise  # a bug (no such table…), not an unavailable database
                problem = describe_sqlite_error(error)
            finally:
                self._write_lock.release()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise JournalUnavailable(f"{what}: {problem} (for {budget:g} s)")
            self._log.warning(
                "journal.write_retried",
                call_id=call_id,
                write=what,
                attempt=attempt,
                problem=problem,
                retry_in_s=round(min(delay, remaining), 3),
            )
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, 1.0)

    async def _rollback(self) -> None:
        if self._conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                await self._conn.execute("ROLLBACK")

    async def start_call(self, call: CallStart, *, deadline_s: float | None = None) -> None:
        """The `in_progress` row. Raises `JournalUnavailable` after the deadline;
        `finish_call` creates the row then, so the call may go on without it."""
        await self._retrying("start", call.call_id, lambda: self._start_call(call), deadline_s)

    async def _start_call(self, call: CallStart) -> None:
        try:
            await self._conn.execute(
                "INSERT OR IGNORE INTO categorizations (call_id, sip_call_id, pbx_call_id,"
                " manager, client_number, status, codec, started_at)"
                " VALUES (?, ?, ?, ?, ?, 'in_progress', ?, ?)",
                (
                    call.call_id,
                    call.sip_call_id,
                    call.pbx_call_id,
                    call.manager,
                    call.client_number,
                    call.codec,
                    _iso(call.started_at),
                ),
            )
        except BaseException:
            await self._rollback()
            raise

    async def finish_call(
        self, call: CallStart, outcome: CallOutcome, *, deadline_s: float | None = None
    ) -> list[str]:
        """Store the outcome (creating the row if the answer-time write never
        made it); a confirmed one enqueues `call.categorized` in the same
        transaction. Idempotent: a call already finished is left as it is and
        nothing is enqueued again. Returns the webhook ids enqueued. Raises
        `JournalUnavailable` when it could not commit before the deadline."""
        return await self._retrying(
            "finish", call.call_id, lambda: self._finish_call(call, outcome), deadline_s
        )

    async def _finish_call(self, call: CallStart, outcome: CallOutcome) -> list[str]:
        webhook_ids: list[str] = []
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
            await self._start_call(call)
            cursor = await self._conn.execute(
                "UPDATE categorizations SET status = ?, category_code = ?, category_name = ?,"
                " value = ?, digits = ?, attempts = ?, end_reason = ?, ended_at = ?"
                " WHERE call_id = ? AND status = 'in_progress'",
                (
                    outcome.status,
                    outcome.category_code,
                    outcome.category_name,
                    str(outcome.value) if outcome.value is not None else None,
                    outcome.digits,
                    outcome.attempts,
                    outcome.end_reason,
                    _iso(outcome.ended_at),
                    call.call_id,
                ),
            )
            if cursor.rowcount == 1 and outcome.status == "confirmed":
                row = await self.get(call.call_id)
                if row is None:
                    raise LookupError(f"no journal row for call {call.call_id}")
                webhook_ids = await enqueue(
                    self._conn,
                    "call.categorized",
                    row.categorized_event(),
                    self._endpoints,
                    now=outcome.ended_at,
                )
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._rollback()
            raise
        return webhook_ids

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
