"""The reports a head of sales asks for, computed in SQL over the call log.

Every report takes one `ReportScope` (a period, an optional manager, the
call-type windows and the zone days and hours are counted in) and returns
plain rows; the API turns them into JSON or CSV and the dashboard draws
them, so the numbers on the page are the numbers of the endpoint.

Definitions (also in docs/architecture.md):
- missed: an inbound call that was not answered (missed, busy or failed);
- unprocessed: a missed call with no answered call with that client (either
  direction, callbacks included) after it; an anonymous miss stays unprocessed;
- wait: ringing time; averages of wait and talk are over answered calls;
- coverage: the share of a manager's answered calls that got a category.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite

from voicebot.journal.call_types import SQL_PREDICATES, TypeRules, sql_parameters
from voicebot.journal.calls import CALL_COLUMNS, CALLS_FROM, CallRecord
from voicebot.slices import map_in_slices

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Buckets of 15 minutes map to local hours right in every zone, including
# the ones 30 or 45 minutes off UTC, whatever DST does.
BUCKET_S = 900
MISSED = SQL_PREDICATES["missed"]


@dataclass(frozen=True, slots=True)
class ReportScope:
    since: datetime | None
    until: datetime | None
    zone: ZoneInfo
    rules: TypeRules
    manager: str | None = None

    def where(self, alias: str = "c") -> tuple[str, dict[str, Any]]:
        clauses = ["1 = 1"]
        params: dict[str, Any] = dict(sql_parameters(self.rules))
        if self.since is not None:
            clauses.append(f"{alias}.started_at >= :since")
            params["since"] = self.since.timestamp()
        if self.until is not None:
            clauses.append(f"{alias}.started_at < :until")
            params["until"] = self.until.timestamp()
        if self.manager is not None:
            clauses.append(f"{alias}.manager = :manager")
            params["manager"] = self.manager
        return " AND ".join(clauses), params


async def _all(
    conn: aiosqlite.Connection, sql: str, params: dict[str, Any]
) -> list[tuple[Any, ...]]:
    async with conn.execute(sql, params) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


# -- missed and unprocessed ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class MissedCall:
    call: CallRecord
    unprocessed: bool


@dataclass(frozen=True, slots=True)
class MissedReport:
    missed: int
    unprocessed: int
    calls: list[MissedCall]
    truncated: bool


_UNPROCESSED = (
    "(c.client_number IS NULL OR NOT EXISTS (SELECT 1 FROM calls a"
    " WHERE a.client_number = c.client_number AND a.status = 'answered'"
    " AND a.started_at > c.started_at))"
)


async def missed(conn: aiosqlite.Connection, scope: ReportScope, limit: int = 1000) -> MissedReport:
    where, params = scope.where()
    totals = await _all(
        conn,
        f"SELECT count(*), coalesce(sum({_UNPROCESSED}), 0) FROM calls c"
        f" WHERE {where} AND {MISSED}",
        params,
    )
    rows = await _all(
        conn,
        f"SELECT {CALL_COLUMNS}, {_UNPROCESSED} AS unprocessed {CALLS_FROM}"
        f" WHERE {where} AND {MISSED}"
        " ORDER BY c.started_at DESC, c.id DESC LIMIT :limit",
        params | {"limit": limit},
    )
    calls = await map_in_slices(
        lambda row: MissedCall(CallRecord.from_row(row[:-1]), bool(row[-1])), rows
    )
    count, unprocessed = totals[0]
    return MissedReport(int(count), int(unprocessed), calls, truncated=count > len(calls))


# -- categories by count and value ------------------------------------------


@dataclass(frozen=True, slots=True)
class CategoryRow:
    code: str
    name: str
    manager: str | None
    calls: int
    value_sum: float


@dataclass(frozen=True, slots=True)
class CategoryReport:
    by_manager: list[CategoryRow]
    totals: list[CategoryRow]  # manager None


async def categories(conn: aiosqlite.Connection, scope: ReportScope) -> CategoryReport:
    where, params = scope.where()
    rows = await _all(
        conn,
        "SELECT c.category_code, coalesce(k.name, max(c.category_name), c.category_code),"
        " c.manager, count(*), coalesce(sum(CAST(c.value AS REAL)), 0)"
        " FROM calls c LEFT JOIN categories k ON k.code = c.category_code"
        f" WHERE {where} AND c.category_code IS NOT NULL"
        " GROUP BY c.category_code, c.manager ORDER BY length(c.category_code),"
        " c.category_code, c.manager",
        params,
    )
    by_manager = [CategoryRow(r[0], r[1], r[2], int(r[3]), round(float(r[4]), 4)) for r in rows]
    totals: dict[str, CategoryRow] = {}
    for row in by_manager:
        seen = totals.get(row.code)
        totals[row.code] = CategoryRow(
            row.code,
            row.name,
            None,
            row.calls + (seen.calls if seen else 0),
            round(row.value_sum + (seen.value_sum if seen else 0.0), 4),
        )
    return CategoryReport(by_manager, list(totals.values()))


# -- hour of day x weekday -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourlyReport:
    """calls[weekday][hour] and missed[weekday][hour], Monday first, local time."""

    calls: list[list[int]]
    missed: list[list[int]]


async def hourly(conn: aiosqlite.Connection, scope: ReportScope) -> HourlyReport:
    where, params = scope.where()
    rows = await _all(
        conn,
        f"SELECT CAST(c.started_at / {BUCKET_S} AS INTEGER) AS bucket, count(*),"
        f" sum({MISSED}) FROM calls c WHERE {where} GROUP BY bucket",
        params,
    )
    calls = [[0] * 24 for _ in range(7)]
    missed_ = [[0] * 24 for _ in range(7)]
    for bucket, count, missed_count in rows:
        local = datetime.fromtimestamp(bucket * BUCKET_S, UTC).astimezone(scope.zone)
        calls[local.weekday()][local.hour] += int(count)
        missed_[local.weekday()][local.hour] += int(missed_count or 0)
    return HourlyReport(calls, missed_)


# -- answered / missed, wait and talk -----------------------------------------


@dataclass(frozen=True, slots=True)
class SummaryRow:
    direction: str
    calls: int
    answered: int
    missed: int
    answered_ratio: float | None
    avg_wait_s: float | None
    avg_talk_s: float | None


async def summary(conn: aiosqlite.Connection, scope: ReportScope) -> list[SummaryRow]:
    where, params = scope.where()
    rows = await _all(
        conn,
        "SELECT c.direction, count(*), sum(c.status = 'answered'),"
        " avg(CASE WHEN c.status = 'answered' THEN c.wait_s END),"
        " avg(CASE WHEN c.status = 'answered' THEN c.talk_s END)"
        f" FROM calls c WHERE {where} AND c.direction IN ('inbound', 'outbound')"
        " GROUP BY c.direction",
        params,
    )
    found = {r[0]: r for r in rows}
    result = []
    for direction in ("inbound", "outbound"):
        _, count, answered, wait, talk = found.get(direction, (direction, 0, 0, None, None))
        count, answered = int(count), int(answered or 0)
        result.append(
            SummaryRow(
                direction=direction,
                calls=count,
                answered=answered,
                missed=count - answered,
                answered_ratio=round(answered / count, 4) if count else None,
                avg_wait_s=round(wait, 2) if wait is not None else None,
                avg_talk_s=round(talk, 2) if talk is not None else None,
            )
        )
    return result


# -- categorization coverage per manager ---------------------------------------


@dataclass(frozen=True, slots=True)
class CoverageRow:
    manager: str
    answered: int
    categorized: int
    coverage: float


async def coverage(conn: aiosqlite.Connection, scope: ReportScope) -> list[CoverageRow]:
    where, params = scope.where()
    rows = await _all(
        conn,
        "SELECT c.manager, count(*), count(c.category_code) FROM calls c"
        f" WHERE {where} AND c.status = 'answered' AND c.manager IS NOT NULL"
        " GROUP BY c.manager ORDER BY c.manager",
        params,
    )
    return [
        CoverageRow(str(m), int(n), int(k), round(int(k) / int(n), 4) if n else 0.0)
        for m, n, k in rows
    ]
