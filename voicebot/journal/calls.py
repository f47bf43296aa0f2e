"""The call log: every call the bot knows of, one row each, in the `calls` table.

Rows come from three places and meet on the PBX's call id:
- PBX call events and CDR imports (`record_call_event`, idempotent on the
  PBX call id: a re-sent event updates the row, never adds one);
- the post-call menu (`record_categorization`): the categorization is put on
  the PBX's call (by `X-Call-ID`, else the same manager's answered call that
  ended just before the menu started); when the PBX told us nothing of that
  call, the menu call becomes a row of its own (`source = 'menu'`), which a
  later PBX event for the same call fills in instead of duplicating;
- callbacks, through `record_call_event(..., source="callback")`.

`prev_inbound_gap_s` (the seconds since the previous inbound call from the
same number) is kept right on every insert, even out of order (a CDR import
of last month), because the unique/repeated rules read it
(voicebot/journal/call_types.py).

The log owns its own connection to the journal's SQLite file (WAL: the
menu's writes on the journal's connection do not wait for reports here).
In the running bot its writes do not use it, though: given the journal's
group commit (`writes=`), every intake is one more write in the journal's
batches, on the journal's connection and thread. Two connections writing one
file at a hundred saves a second wait for each other's write lock in
SQLite's busy handler, which sleeps 1, 2, 5, 10, 15, 20... ms between tries
whatever the other's transaction takes; one writer never waits for a lock.
Opened with `separate_reader=True` (the running bot), its reads for the API
(`list`, `get`, and `reader` for the reports) go through a second, read-only
connection of their own (voicebot/journal/reader.py), so a long report never
queues the log's own writes.
"""

from __future__ import annotations

import asyncio
import builtins
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from voicebot.clock import Clock, SystemClock
from voicebot.cursor import CursorError, decode_cursor, next_cursor
from voicebot.journal.call_events import CallEvent, normalise_number
from voicebot.journal.call_types import (
    SQL_PREDICATES,
    CallFacts,
    CallType,
    TypeRules,
    call_types,
    sql_parameters,
)
from voicebot.journal.database import BEGIN_RETRY_S, open_database
from voicebot.journal.group_commit import GroupCommit
from voicebot.journal.reader import open_reader
from voicebot.journal.where import between, seconds
from voicebot.logs import get_logger
from voicebot.slices import map_in_slices
from webhooks.sqlite_trip import write_in_one_trip

Source = Literal["pbx", "cdr", "menu", "callback"]
T = TypeVar("T")

# The PBX routes the manager's line to the bot as the client hangs up, so the
# menu starts within seconds of the call's end; two minutes covers a slow
# transfer, and a few seconds the other way cover the PBX's and our clocks
# disagreeing (both NTP-synced in any sane install). More slack would pin a
# menu call on a call that ended after it.
MENU_LINK_WINDOW_S = 120.0
CLOCK_SLACK_S = 5.0

_COLUMNS = (
    "id",
    "source",
    "pbx_call_id",
    "direction",
    "caller",
    "callee",
    "company_number",
    "client_number",
    "manager",
    "status",
    "started_at",
    "answered_at",
    "ended_at",
    "wait_s",
    "talk_s",
    "prev_inbound_gap_s",
    "is_callback",
    "categorization_id",
    "category_code",
    "category_name",
    "value",
)
_ROW_LENGTH = len(_COLUMNS) + 1  # and spam, from the catalogue
_IS_CALLBACK, _VALUE, _SPAM = _COLUMNS.index("is_callback"), _COLUMNS.index("value"), len(_COLUMNS)
CALL_COLUMNS = ", ".join(f"c.{name}" for name in _COLUMNS) + ", COALESCE(k.spam, 0) AS spam"
CALLS_FROM = "FROM calls c LEFT JOIN categories k ON k.code = c.category_code"
SELECT_CALLS = f"SELECT {CALL_COLUMNS} {CALLS_FROM}"


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def json_number(value: Decimal | None) -> int | float | None:
    """A stored amount as JSON writes numbers: 100 stays 100, 12.5 is 12.5."""
    if value is None:
        return None
    return int(value) if value == value.to_integral() else float(value)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One row of the call log, as read back."""

    id: int
    source: Source
    pbx_call_id: str | None
    direction: str | None
    caller: str | None
    callee: str | None
    company_number: str | None
    client_number: str | None
    manager: str | None
    status: str
    started_at: float
    answered_at: float | None
    ended_at: float | None
    wait_s: float | None
    talk_s: float | None
    prev_inbound_gap_s: float | None
    is_callback: bool
    categorization_id: str | None
    category_code: str | None
    category_name: str | None
    value: Decimal | None
    spam: bool

    @classmethod
    def from_row(cls, row: aiosqlite.Row | Sequence[Any]) -> CallRecord:
        # Positional, in _COLUMNS order (the fields' order): a report lists a
        # thousand calls, and building a dict per row was half its time.
        values = list(row)
        if len(values) != _ROW_LENGTH:
            raise ValueError(f"a call row has {_ROW_LENGTH} columns, not {len(values)}")
        values[_IS_CALLBACK] = bool(values[_IS_CALLBACK])
        if values[_VALUE] is not None:
            values[_VALUE] = Decimal(values[_VALUE])
        values[_SPAM] = bool(values[_SPAM])
        return cls(*values)

    def facts(self) -> CallFacts:
        return CallFacts(
            direction=self.direction,
            status=self.status,
            client_number=self.client_number,
            talk_s=self.talk_s,
            prev_inbound_gap_s=self.prev_inbound_gap_s,
            is_callback=self.is_callback,
            spam=self.spam,
        )

    def types(self, rules: TypeRules) -> list[CallType]:
        return call_types(self.facts(), rules)

    def as_json(self, rules: TypeRules) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "pbx_call_id": self.pbx_call_id,
            "direction": self.direction,
            "caller": self.caller,
            "callee": self.callee,
            "company_number": self.company_number,
            "client_number": self.client_number,
            "manager": self.manager,
            "status": self.status,
            "started_at": iso(self.started_at),
            "answered_at": iso(self.answered_at),
            "ended_at": iso(self.ended_at),
            "wait_s": self.wait_s,
            "talk_s": self.talk_s,
            "types": self.types(rules),
            "category": (
                {"code": self.category_code, "name": self.category_name}
                if self.category_code is not None
                else None
            ),
            "value": json_number(self.value),
            "categorization_id": self.categorization_id,
        }


@dataclass(frozen=True, slots=True)
class StoredCall:
    """What an intake did: the row as stored now, and whether it is new."""

    call: CallRecord
    created: bool
    changed: bool


CallListener = Callable[[StoredCall], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CallFilter:
    since: datetime | None = None
    until: datetime | None = None
    manager: str | None = None
    direction: str | None = None
    status: str | None = None
    call_type: CallType | None = None
    category: str | None = None
    number: str | None = None

    def where(self, rules: TypeRules) -> tuple[list[str], dict[str, Any]]:
        clauses, params = between("c.started_at", seconds(self.since), seconds(self.until))
        for name in ("manager", "direction", "status"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"c.{name} = :{name}")
                params[name] = value
        if self.category is not None:
            clauses.append("c.category_code = :category")
            params["category"] = self.category
        if self.number is not None:
            clauses.append("c.client_number = :number")
            params["number"] = normalise_number(self.number)
        if self.call_type is not None:
            clauses.append(SQL_PREDICATES[self.call_type])
            params.update(sql_parameters(rules))
        return clauses, params


def _ts(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def _fetch(raw: sqlite3.Connection, where: str, params: Sequence[Any]) -> CallRecord | None:
    row = raw.execute(f"{SELECT_CALLS} WHERE {where}", tuple(params)).fetchone()
    return CallRecord.from_row(row) if row is not None else None


def _parse_iso(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def connect(path: Path) -> aiosqlite.Connection:
    """A connection to the journal's file, migrated, in autocommit mode."""
    return await open_database(path)


class CallLog:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        rules: TypeRules,
        clock: Clock | None = None,
        reader: aiosqlite.Connection | None = None,
        *,
        writes: GroupCommit | None = None,
    ) -> None:
        self._conn = conn
        self._reader = reader
        self._writes = writes
        self.rules = rules
        self._clock = clock or SystemClock()
        # Every write here is a multi-statement transaction on one shared
        # connection: serialise them, or one's BEGIN lands inside another's.
        self.write_lock = asyncio.Lock()
        self._listeners: list[CallListener] = []
        self._log = get_logger()

    @classmethod
    async def open(
        cls,
        path: Path,
        rules: TypeRules,
        clock: Clock | None = None,
        *,
        separate_reader: bool = False,
        writes: GroupCommit | None = None,
    ) -> CallLog:
        """`separate_reader`: serve `list`, `get` and `reader` from a read-only
        connection of their own (the running bot does, for its HTTP API).
        `writes`: the journal's group commit, to write through (see the module
        docstring); the log's own connection otherwise."""
        conn = await connect(path)
        try:
            reader = await open_reader(path) if separate_reader else None
        except BaseException:
            await conn.close()
            raise
        return cls(conn, rules, clock, reader, writes=writes)

    @property
    def connection(self) -> aiosqlite.Connection:
        """The connection the log writes on (and reads within its writes)."""
        return self._conn

    @property
    def reader(self) -> aiosqlite.Connection:
        """The connection for reads that are not part of a write: the reports,
        the API's lists. The writing one when the log has no reader of its own."""
        return self._reader if self._reader is not None else self._conn

    async def close(self) -> None:
        if self._reader is not None:
            await self._reader.close()
        await self._conn.close()

    def subscribe(self, listener: CallListener) -> None:
        """Have `listener` called after every stored intake (callbacks hook in here)."""
        self._listeners.append(listener)

    async def _transaction(self, work: Callable[[sqlite3.Connection], T], call_id: str = "-") -> T:
        """`work` as one transaction in one trip to the connection's thread (see
        `write_in_one_trip`): the file's write lock is never held across turns
        of the event loop, so the journal's saves and the dispatcher do not
        wait for a busy loop to finish this one. A BEGIN answered SQLITE_BUSY
        at once (a read of this connection still open, see `begin_immediate`)
        is tried again shortly, as `begin_immediate` does.

        With the journal's group commit (`writes`), `work` is one write of its
        batches instead (its own savepoint; a busy file retried until
        `BEGIN_RETRY_S`, then `JournalUnavailable`)."""
        if self._writes is not None:
            result: T = await self._writes.write("call_log", call_id, work, BEGIN_RETRY_S)
            return result
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BEGIN_RETRY_S
        pause = 0.002
        async with self.write_lock:
            while True:
                try:
                    return await write_in_one_trip(self._conn, work)
                except sqlite3.OperationalError as error:
                    busy = (getattr(error, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY
                    if not busy or loop.time() + pause > deadline:
                        raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)

    # -- intake ------------------------------------------------------------

    async def record_call_event(self, event: CallEvent, *, source: Source = "pbx") -> StoredCall:
        """Store one PBX call event (idempotent on `event.call_id`) and tell the listeners."""
        stored = await self._transaction(lambda raw: self._record_event(raw, event, source))
        self._log.info(
            "call_log.recorded",
            pbx_call_id=event.call_id,
            id=stored.call.id,
            source=source,
            status=event.status,
            direction=event.direction,
            created=stored.created,
            changed=stored.changed,
        )
        for listener in self._listeners:
            await listener(stored)
        return stored

    def _record_event(
        self, raw: sqlite3.Connection, event: CallEvent, source: Source
    ) -> StoredCall:
        facts: dict[str, Any] = {
            "source": source,
            "pbx_call_id": event.call_id,
            "direction": event.direction,
            "caller": event.caller,
            "callee": event.callee,
            "company_number": event.company_number,
            "client_number": event.client_number,
            "manager": event.manager,
            "status": event.status,
            "started_at": event.started_at.timestamp(),
            "answered_at": _ts(event.answered_at),
            "ended_at": _ts(event.ended_at),
            "wait_s": event.wait_s(),
            "talk_s": event.talk_s(),
            "is_callback": int(event.callback),
        }
        existing = _fetch(raw, "c.pbx_call_id = ?", (event.call_id,))
        if existing is None and event.status == "answered" and event.manager:
            existing = self._menu_row_for(raw, event)
        now = self._clock.now().timestamp()
        if existing is None:
            names = [*facts, "recorded_at", "updated_at"]
            cursor = raw.execute(
                f"INSERT INTO calls ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                (*facts.values(), now, now),
            )
            call_id = cursor.lastrowid
            assert call_id is not None
            self._place_in_history(raw, call_id, facts)
            created = _fetch(raw, "c.id = ?", (call_id,))
            assert created is not None
            return StoredCall(created, created=True, changed=True)
        if all(self._same(existing, name, value) for name, value in facts.items()):
            return StoredCall(existing, created=False, changed=False)
        raw.execute(
            f"UPDATE calls SET {', '.join(f'{n} = ?' for n in facts)}, updated_at = ? WHERE id = ?",
            (*facts.values(), now, existing.id),
        )
        self._move_in_history(raw, existing, facts)
        updated = _fetch(raw, "c.id = ?", (existing.id,))
        assert updated is not None
        return StoredCall(updated, created=False, changed=True)

    @staticmethod
    def _same(call: CallRecord, name: str, value: Any) -> bool:
        current = getattr(call, name)
        if name == "is_callback":
            return bool(value) == current
        return bool(current == value)

    def _menu_row_for(self, raw: sqlite3.Connection, event: CallEvent) -> CallRecord | None:
        """A menu call with no PBX id that this answered call explains."""
        end = (event.ended_at or event.started_at).timestamp()
        return _fetch(
            raw,
            "c.source = 'menu' AND c.pbx_call_id IS NULL AND c.manager = ?"
            " AND c.started_at BETWEEN ? AND ?"
            " AND (c.client_number IS NULL OR ? IS NULL OR c.client_number = ?)"
            " ORDER BY abs(c.started_at - ?) LIMIT 1",
            (
                event.manager,
                end - CLOCK_SLACK_S,
                end + MENU_LINK_WINDOW_S,
                event.client_number,
                event.client_number,
                end,
            ),
        )

    def _place_in_history(
        self, raw: sqlite3.Connection, call_id: int, facts: dict[str, Any]
    ) -> None:
        """Set the new call's gap to the number's previous inbound call, and
        the gap of the number's next inbound call to this one."""
        number = facts["client_number"]
        if number is None or facts["direction"] != "inbound":
            return
        key = (facts["started_at"], call_id)
        previous = raw.execute(
            "SELECT started_at FROM calls WHERE client_number = ? AND direction = 'inbound'"
            " AND (started_at, id) < (?, ?) ORDER BY started_at DESC, id DESC LIMIT 1",
            (number, *key),
        ).fetchone()
        if previous is not None:
            raw.execute(
                "UPDATE calls SET prev_inbound_gap_s = ? WHERE id = ?",
                (facts["started_at"] - previous[0], call_id),
            )
        raw.execute(
            "UPDATE calls SET prev_inbound_gap_s = started_at - ? WHERE id = ("
            " SELECT id FROM calls WHERE client_number = ? AND direction = 'inbound'"
            " AND (started_at, id) > (?, ?) ORDER BY started_at, id LIMIT 1)",
            (facts["started_at"], number, *key),
        )

    def _move_in_history(
        self, raw: sqlite3.Connection, call: CallRecord, facts: dict[str, Any]
    ) -> None:
        """After an update: take the call out of its old place in its number's
        inbound history (its old successor now counts from its old
        predecessor) and put it in the new one, as an insert does. Only the
        neighbours are touched, however many calls the number has."""

        def place(number: str | None, direction: str | None, started: float) -> Any:
            return (number, started) if number is not None and direction == "inbound" else None

        old = place(call.client_number, call.direction, call.started_at)
        new = place(facts["client_number"], facts["direction"], facts["started_at"])
        if old == new:
            return
        if old is not None:
            number, started = old
            neighbours = (
                "FROM calls WHERE client_number = ? AND direction = 'inbound' AND id != ?"
                " AND (started_at, id) {} (?, ?) ORDER BY started_at {}, id {} LIMIT 1"
            )
            params = (number, call.id, started, call.id)
            successor = raw.execute(
                "SELECT id " + neighbours.format(">", "ASC", "ASC"), params
            ).fetchone()
            if successor is not None:
                previous = raw.execute(
                    "SELECT started_at " + neighbours.format("<", "DESC", "DESC"), params
                ).fetchone()
                raw.execute(
                    "UPDATE calls SET prev_inbound_gap_s = started_at - ? WHERE id = ?",
                    (previous[0] if previous is not None else None, successor[0]),
                )
        raw.execute("UPDATE calls SET prev_inbound_gap_s = NULL WHERE id = ?", (call.id,))
        if new is not None:
            self._place_in_history(raw, call.id, facts)

    async def record_categorization(self, categorization_id: str) -> StoredCall | None:
        """Put a finished menu categorization on its call (or make the menu call one)."""
        stored = await self._transaction(
            lambda raw: self._record_categorization(raw, categorization_id), categorization_id
        )
        if stored is None:
            return None
        self._log.info(
            "call_log.categorized",
            call_id=categorization_id,
            id=stored.call.id,
            category=stored.call.category_code,
            created=stored.created,
        )
        for listener in self._listeners:
            await listener(stored)
        return stored

    def _record_categorization(
        self, raw: sqlite3.Connection, categorization_id: str
    ) -> StoredCall | None:
        row = raw.execute(
            "SELECT pbx_call_id, manager, client_number, category_code, category_name, value,"
            " status, started_at FROM categorizations WHERE call_id = ?",
            (categorization_id,),
        ).fetchone()
        if row is None or row[6] == "in_progress":
            return None
        pbx_call_id, manager, client_number, code, name, value, _, started = row
        client_number = normalise_number(client_number)
        menu_at = _parse_iso(started)
        category = {
            "categorization_id": categorization_id,
            "category_code": code,
            "category_name": name,
            "value": value,
        }
        target = _fetch(raw, "c.categorization_id = ?", (categorization_id,))
        if target is None and pbx_call_id is not None:
            target = _fetch(raw, "c.pbx_call_id = ?", (pbx_call_id,))
        if target is None and pbx_call_id is None and manager is not None:
            target = _fetch(
                raw,
                "c.manager = ? AND c.status = 'answered' AND c.categorization_id IS NULL"
                " AND c.source != 'menu' AND c.ended_at BETWEEN ? AND ?"
                " AND (c.client_number IS NULL OR ? IS NULL OR c.client_number = ?)"
                " ORDER BY abs(c.ended_at - ?) LIMIT 1",
                (
                    manager,
                    menu_at - MENU_LINK_WINDOW_S,
                    menu_at + CLOCK_SLACK_S,
                    client_number,
                    client_number,
                    menu_at,
                ),
            )
        now = self._clock.now().timestamp()
        if target is not None:
            raw.execute(
                f"UPDATE calls SET {', '.join(f'{n} = ?' for n in category)}, updated_at = ?"
                " WHERE id = ?",
                (*category.values(), now, target.id),
            )
            updated = _fetch(raw, "c.id = ?", (target.id,))
            assert updated is not None
            return StoredCall(updated, created=False, changed=updated != target)
        facts: dict[str, Any] = {
            "source": "menu",
            "pbx_call_id": pbx_call_id,
            "client_number": client_number,
            "manager": manager,
            "status": "answered",
            "started_at": menu_at,
            **category,
            "recorded_at": now,
            "updated_at": now,
        }
        cursor = raw.execute(
            f"INSERT INTO calls ({', '.join(facts)}) VALUES ({', '.join('?' for _ in facts)})",
            tuple(facts.values()),
        )
        created = _fetch(raw, "c.id = ?", (cursor.lastrowid,))
        assert created is not None
        return StoredCall(created, created=True, changed=True)

    # -- reading -------------------------------------------------------------

    async def get(self, call_id: int) -> CallRecord | None:
        async with self.reader.execute(f"{SELECT_CALLS} WHERE c.id = ?", (call_id,)) as cursor:
            row = await cursor.fetchone()
        return CallRecord.from_row(row) if row is not None else None

    async def list(
        self, filters: CallFilter, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[CallRecord], str | None]:
        """Newest first; `cursor` continues after the last row of the previous
        page. The order (started_at, id) never changes for a stored row, so a
        row added while paging shows up once or not at all, never twice, and
        no row is skipped."""
        position = decode_cursor(cursor) if cursor is not None else None
        if filters.call_type == "spam":
            rows = await self._spam_rows(filters, limit + 1, position)
        else:
            rows = await self._rows(filters, limit + 1, position)
        return rows[:limit], next_cursor(rows, limit, lambda call: (call.started_at, call.id))

    async def _rows(
        self, filters: CallFilter, count: int, position: tuple[float, int] | None
    ) -> builtins.list[CallRecord]:
        clauses, params = filters.where(self.rules)
        if position is not None:
            clauses.append("(c.started_at, c.id) < (:cursor_at, :cursor_id)")
            params |= {"cursor_at": position[0], "cursor_id": position[1]}
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params["limit"] = count
        async with self.reader.execute(
            f"{SELECT_CALLS}{where} ORDER BY c.started_at DESC, c.id DESC LIMIT :limit", params
        ) as rows_cursor:
            return await map_in_slices(CallRecord.from_row, await rows_cursor.fetchall())

    async def _spam_rows(
        self, filters: CallFilter, count: int, position: tuple[float, int] | None
    ) -> builtins.list[CallRecord]:
        """type=spam as one ordered read of calls_category per spam code, merged:
        `category_code IN (spam codes)` would sort every spam call of the
        journal for one page (0.3 s at 1 M calls, bench/journal.py)."""
        async with self.reader.execute("SELECT code FROM categories WHERE spam = 1") as cursor:
            codes = [str(row[0]) for row in await cursor.fetchall()]
        if filters.category is not None:
            codes = [code for code in codes if code == filters.category]
        rows: builtins.list[CallRecord] = []
        for code in codes:
            rows += await self._rows(
                replace(filters, call_type=None, category=code), count, position
            )
        rows.sort(key=lambda call: (call.started_at, call.id), reverse=True)
        return rows[:count]


__all__ = [
    "CallFilter",
    "CallListener",
    "CallLog",
    "CallRecord",
    "CursorError",
    "StoredCall",
    "connect",
]
