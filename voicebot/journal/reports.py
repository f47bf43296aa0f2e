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

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite

from voicebot.journal.call_types import (
    CALL_TYPES,
    SQL_PREDICATES,
    CallType,
    TypeRules,
    sql_parameters,
)
from voicebot.journal.calls import CALL_COLUMNS, CALLS_FROM, CallRecord
from voicebot.slices import map_in_slices

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# Buckets of 15 minutes map to local hours right in every zone, including
# the ones 30 or 45 minutes off UTC, whatever DST does.
BUCKET_S = 900
#: Written exactly as in the calls_buckets index of journal migration 4, or
#: SQLite will not use it.
BUCKET_EXPRESSION = "CAST(c.started_at / 900 AS INTEGER)"
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
    # One trip to the connection's thread: the call log's connection is shared,
    # and a statement left open across an await makes its next BEGIN fail.
    return [tuple(row) for row in await conn.execute_fetchall(sql, params)]


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


# `+a.status` keeps the planner off calls_status (every answered call after
# this one, of any client) and on calls_client_status (this client's later
# calls, status in the index): 52 s against 15 ms for a week at 1 M calls.
_UNPROCESSED = (
    "(c.client_number IS NULL OR NOT EXISTS (SELECT 1 FROM calls a"
    " WHERE a.client_number = c.client_number AND +a.status = 'answered'"
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
    # The bucket bounds let the calls_buckets index (migration 4) serve the
    # range and the grouping in index order; started_at still bounds exactly.
    if scope.since is not None:
        where += f" AND {BUCKET_EXPRESSION} >= :since_bucket"
        params["since_bucket"] = math.floor(scope.since.timestamp() / BUCKET_S)
    if scope.until is not None:
        where += f" AND {BUCKET_EXPRESSION} <= :until_bucket"
        params["until_bucket"] = math.floor(scope.until.timestamp() / BUCKET_S)
    rows = await _all(
        conn,
        f"SELECT {BUCKET_EXPRESSION}, count(*), sum({MISSED}) FROM calls c"
        f" WHERE {where} GROUP BY {BUCKET_EXPRESSION}",
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
    # One pass with conditional sums rather than GROUP BY direction, which
    # sorts every row of the period first (2 s against 0.4 s over a year at 1 M).
    columns = []
    for direction in ("inbound", "outbound"):
        mine = f"c.direction = '{direction}'"
        mine_answered = f"{mine} AND c.status = 'answered'"
        columns += [
            f"sum({mine})",
            f"sum({mine_answered})",
            f"avg(CASE WHEN {mine_answered} THEN c.wait_s END)",
            f"avg(CASE WHEN {mine_answered} THEN c.talk_s END)",
        ]
    rows = await _all(
        conn,
        f"SELECT {', '.join(columns)} FROM calls c"
        f" WHERE {where} AND c.direction IN ('inbound', 'outbound')",
        params,
    )
    found = rows[0]
    result = []
    for index, direction in enumerate(("inbound", "outbound")):
        count, answered, wait, talk = found[index * 4 : index * 4 + 4]
        count, answered = int(count or 0), int(answered or 0)
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
    # `+c.status`: read calls_report (index-only) over the period rather than
    # calls_status and a row per answered call.
    rows = await _all(
        conn,
        "SELECT c.manager, count(*), count(c.category_code) FROM calls c"
        f" WHERE {where} AND +c.status = 'answered' AND c.manager IS NOT NULL"
        " GROUP BY c.manager ORDER BY c.manager",
        params,
    )
    return [
        CoverageRow(str(m), int(n), int(k), round(int(k) / int(n), 4) if n else 0.0)
        for m, n, k in rows
    ]


# -- calls by status and type (for /metrics) -----------------------------------


@dataclass(frozen=True, slots=True)
class CallTally:
    #: (direction or "unknown", status) -> calls
    by_status: dict[tuple[str, str], int]
    by_type: dict[CallType, int]


async def tally(conn: aiosqlite.Connection, scope: ReportScope) -> CallTally:
    """Calls of the period by direction and status, and by type (a call has
    several types or none), each type counted by its SQL twin rule."""
    where, params = scope.where()
    rows = await _all(
        conn,
        "SELECT coalesce(c.direction, 'unknown'), c.status, count(*) FROM calls c"
        f" WHERE {where} GROUP BY 1, 2",
        params,
    )
    sums = ", ".join(f"coalesce(sum({SQL_PREDICATES[name]}), 0)" for name in CALL_TYPES)
    types = (await _all(conn, f"SELECT {sums} FROM calls c WHERE {where}", params))[0]
    return CallTally(
        by_status={(str(d), str(s)): int(n) for d, s, n in rows},
        by_type={name: int(n) for name, n in zip(CALL_TYPES, types, strict=True)},
    )


# -- callback results ------------------------------------------------------------

OPEN_STATES = ("queued", "dialling")
JOB_STATES = ("queued", "dialling", "completed", "not_needed", "failed", "cancelled", "skipped")


@dataclass(frozen=True, slots=True)
class CallbackReport:
    """Callback jobs whose first missed call falls in the period
    (`callback_jobs`, voicebot/callbacks/queue.py)."""

    jobs: int
    by_state: dict[str, int]
    #: completed / jobs that ended after being dialled (not open, not skipped).
    share_recovered: float | None
    #: From the first missed call to the first attempt, over jobs dialled at least once.
    avg_first_callback_s: float | None
    median_first_callback_s: float | None
    #: Attempts per job, over jobs dialled at least once.
    attempts_per_job: float | None


async def callbacks(conn: aiosqlite.Connection, scope: ReportScope) -> CallbackReport:
    clauses: list[str] = ["1 = 1"]
    params: dict[str, Any] = {}
    if scope.since is not None:
        clauses.append("j.first_missed_at >= :since")
        params["since"] = scope.since.timestamp()
    if scope.until is not None:
        clauses.append("j.first_missed_at < :until")
        params["until"] = scope.until.timestamp()
    if scope.manager is not None:
        # A job has no manager of its own: the manager who took one of its attempts.
        clauses.append(
            "EXISTS (SELECT 1 FROM callback_attempts m WHERE m.job_id = j.id"
            " AND m.target = :manager)"
        )
        params["manager"] = scope.manager
    rows = await _all(
        conn,
        "SELECT j.state, j.first_missed_at, min(a.started_at), count(a.id)"
        " FROM callback_jobs j LEFT JOIN callback_attempts a ON a.job_id = j.id"
        f" WHERE {' AND '.join(clauses)} GROUP BY j.id",
        params,
    )
    by_state = dict.fromkeys(JOB_STATES, 0)
    waits: list[float] = []
    attempts: list[int] = []
    for state, first_missed, first_attempt, count in rows:
        by_state[str(state)] = by_state.get(str(state), 0) + 1
        if first_attempt is not None:
            waits.append(max(0.0, float(first_attempt) - float(first_missed)))
            attempts.append(int(count))
    ended = sum(n for s, n in by_state.items() if s not in (*OPEN_STATES, "skipped"))
    waits.sort()
    return CallbackReport(
        jobs=len(rows),
        by_state=by_state,
        share_recovered=round(by_state["completed"] / ended, 4) if ended else None,
        avg_first_callback_s=round(sum(waits) / len(waits), 1) if waits else None,
        median_first_callback_s=round(_median(waits), 1) if waits else None,
        attempts_per_job=round(sum(attempts) / len(attempts), 2) if attempts else None,
    )


def _median(values: list[float]) -> float:
    middle = len(values) // 2
    if len(values) % 2:
        return values[middle]
    return (values[middle - 1] + values[middle]) / 2
