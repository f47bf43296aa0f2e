"""The category catalogue managers key codes from, in the `categories` table.

Seeded from `categories` in settings on the first start (an empty table);
after that the database is the truth, edited through the API or
`voicebot categories`, and every menu call reads it when it is answered, so a
change is heard on the next call without a restart.

Deleting is soft (`deleted_at`): a call filed under a deleted code keeps its
code and name (the call log stores both), the code stops being offered, and
adding the same code again revives the row. Active codes are unique because
the code is the primary key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import aiosqlite

import ivr
from voicebot.clock import Clock, SystemClock
from voicebot.journal.database import begin_immediate


class CategoryExists(Exception):
    pass


class CategoryNotFound(Exception):
    pass


class LastCategory(Exception):
    """The menu asks for a category and this is the last one left."""


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    code: str
    name: str
    value: Decimal | None
    spam: bool
    created_at: float
    updated_at: float
    deleted_at: float | None

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None


_COLUMNS = "code, name, value, spam, created_at, updated_at, deleted_at"


def _entry(row: aiosqlite.Row | tuple[object, ...]) -> CatalogueEntry:
    code, name, value, spam, created_at, updated_at, deleted_at = tuple(row)
    return CatalogueEntry(
        code=str(code),
        name=str(name),
        value=Decimal(str(value)) if value is not None else None,
        spam=bool(spam),
        created_at=float(created_at),
        updated_at=float(updated_at),
        deleted_at=float(deleted_at) if deleted_at is not None else None,
    )


def _text(value: Decimal | None) -> str | None:
    return str(value) if value is not None else None


class CategoryCatalogue:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        write_lock: asyncio.Lock,
        clock: Clock | None = None,
        *,
        keep_one: bool = True,
    ) -> None:
        self._conn = conn
        self._lock = write_lock
        self._clock = clock or SystemClock()
        # With `ivr.ask_category` on, a menu with no codes cannot run.
        self._keep_one = keep_one

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def seed(self, categories: Iterable[ivr.Category]) -> int:
        """Fill an empty catalogue (first start); returns the rows added."""
        async with self._lock:
            async with self._conn.execute("SELECT count(*) FROM categories") as cursor:
                row = await cursor.fetchone()
            if row is not None and row[0] > 0:
                return 0
            now = self._now()
            items = list(categories)
            await begin_immediate(self._conn)
            try:
                await self._conn.executemany(
                    "INSERT INTO categories (code, name, value, spam, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [(c.code, c.name, _text(c.value), int(c.spam), now, now) for c in items],
                )
                await self._conn.execute("COMMIT")
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            return len(items)

    async def entries(self, include_deleted: bool = False) -> list[CatalogueEntry]:
        where = "" if include_deleted else " WHERE deleted_at IS NULL"
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM categories{where} ORDER BY length(code), code"
        ) as cursor:
            return [_entry(row) for row in await cursor.fetchall()]

    async def get(self, code: str) -> CatalogueEntry | None:
        async with self._conn.execute(
            f"SELECT {_COLUMNS} FROM categories WHERE code = ?", (code,)
        ) as cursor:
            row = await cursor.fetchone()
        return _entry(row) if row is not None else None

    async def add(
        self, code: str, name: str, value: Decimal | None = None, spam: bool = False
    ) -> CatalogueEntry:
        async with self._lock:
            existing = await self.get(code)
            now = self._now()
            if existing is not None and not existing.deleted:
                raise CategoryExists(code)
            if existing is not None:
                await self._conn.execute(
                    "UPDATE categories SET name = ?, value = ?, spam = ?, updated_at = ?,"
                    " deleted_at = NULL WHERE code = ?",
                    (name, _text(value), int(spam), now, code),
                )
            else:
                await self._conn.execute(
                    "INSERT INTO categories (code, name, value, spam, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (code, name, _text(value), int(spam), now, now),
                )
        entry = await self.get(code)
        assert entry is not None
        return entry

    async def update(
        self, code: str, name: str, value: Decimal | None, spam: bool
    ) -> CatalogueEntry:
        async with self._lock:
            cursor = await self._conn.execute(
                "UPDATE categories SET name = ?, value = ?, spam = ?, updated_at = ?"
                " WHERE code = ? AND deleted_at IS NULL",
                (name, _text(value), int(spam), self._now(), code),
            )
            if cursor.rowcount == 0:
                raise CategoryNotFound(code)
        entry = await self.get(code)
        assert entry is not None
        return entry

    async def remove(self, code: str) -> CatalogueEntry:
        async with self._lock:
            existing = await self.get(code)
            if existing is None or existing.deleted:
                raise CategoryNotFound(code)
            if self._keep_one and len(await self.entries()) <= 1:
                raise LastCategory(code)
            await self._conn.execute(
                "UPDATE categories SET deleted_at = ?, updated_at = ? WHERE code = ?",
                (self._now(), self._now(), code),
            )
        entry = await self.get(code)
        assert entry is not None
        return entry

    async def menu_categories(self) -> dict[str, ivr.Category]:
        """What the menu offers right now, by code."""
        return {
            e.code: ivr.Category(code=e.code, name=e.name, value=e.value, spam=e.spam)
            for e in await self.entries()
        }
