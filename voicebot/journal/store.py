"""The call journal: the one module that owns the journal's SQL.

A categorization row is written when the call is answered (`in_progress`) and
finished when the menu saves (`confirmed` / `incomplete`), so a process killed
mid-call leaves a row that the next start marks `incomplete` instead of
losing the call. Finishing a confirmed categorization and enqueuing its
`call.categorized` webhook happen in one transaction (transactional outbox).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from voicebot.journal.migrations import migrate
from webhooks import Endpoint, enqueue, ensure_schema

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


class Journal:
    def __init__(self, conn: aiosqlite.Connection, endpoints: Sequence[Endpoint] = ()) -> None:
        self._conn = conn
        self._endpoints = tuple(endpoints)
        # One connection is shared by every call: finish_call's transaction spans
        # several awaits, so writes are serialized or a second call's BEGIN (or
        # its INSERT) would land inside the first call's transaction.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path, endpoints: Sequence[Endpoint] = ()) -> Journal:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        # WAL lets the webhook dispatcher and the CLI read while calls write;
        # synchronous=NORMAL is durable across process crashes in WAL mode.
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA foreign_keys=ON")
        await migrate(conn)
        await ensure_schema(conn)
        return cls(conn, endpoints)

    @property
    def connection(self) -> aiosqlite.Connection:
        return self._conn

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

    async def start_call(self, call: CallStart) -> None:
        async with self._write_lock:
            await self._start_call(call)

    async def _start_call(self, call: CallStart) -> None:
        await self._conn.execute(
            "INSERT INTO categorizations (call_id, sip_call_id, pbx_call_id, manager,"
            " client_number, status, codec, started_at)"
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

    async def finish_call(self, call_id: str, outcome: CallOutcome) -> list[str]:
        """Store the outcome; a confirmed one enqueues `call.categorized` in the
        same transaction. Returns the webhook ids enqueued."""
        async with self._write_lock:
            return await self._finish_call(call_id, outcome)

    async def _finish_call(self, call_id: str, outcome: CallOutcome) -> list[str]:
        webhook_ids: list[str] = []
        await self._conn.execute("BEGIN IMMEDIATE")
        try:
            await self._conn.execute(
                "UPDATE categorizations SET status = ?, category_code = ?, category_name = ?,"
                " value = ?, digits = ?, attempts = ?, end_reason = ?, ended_at = ?"
                " WHERE call_id = ?",
                (
                    outcome.status,
                    outcome.category_code,
                    outcome.category_name,
                    str(outcome.value) if outcome.value is not None else None,
                    outcome.digits,
                    outcome.attempts,
                    outcome.end_reason,
                    _iso(outcome.ended_at),
                    call_id,
                ),
            )
            if outcome.status == "confirmed":
                row = await self.get(call_id)
                if row is None:
                    raise LookupError(f"no journal row for call {call_id}")
                webhook_ids = await enqueue(
                    self._conn,
                    "call.categorized",
                    row.categorized_event(),
                    self._endpoints,
                    now=outcome.ended_at,
                )
            await self._conn.execute("COMMIT")
        except BaseException:
            await self._conn.execute("ROLLBACK")
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
