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

How they stay fast at a million calls (voicebot/journal/rollups.py): a
period is split into the whole UTC days (quarter hours for the hour x
weekday report) inside it, summed from the rollup tables, and the partial
units at its two ends, read from `calls` with the same definitions; the two
parts are merged before anything is rounded. Sums of wait and talk are whole
milliseconds, so an average is the same whichever way its calls were added.
The unprocessed count reads the maintained `calls.unprocessed` flag.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from voicebot.journal.rollups import DAY_S, QUARTER_S, first_unit_from, unit_of
from voicebot.journal.where import between, seconds
from voicebot.slices import map_in_slices

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MISSED = SQL_PREDICATES["missed"]
# Whole milliseconds, as the rollups keep them (rollups._ms).
_WAIT_MS = "CAST(round(c.wait_s * 1000) AS INTEGER)"
_TALK_MS = "CAST(round(c.talk_s * 1000) AS INTEGER)"


@dataclass(frozen=True, slots=True)
class ReportScope:
    since: datetime | None
    until: datetime | None
    zone: ZoneInfo
    rules: TypeRules
    manager: str | None = None

    def where(self, alias: str = "c") -> tuple[str, dict[str, Any]]:
        return self.where_between(seconds(self.since), seconds(self.until), alias)

    def where_between(
        self, since: float | None, until: float | None, alias: str = "c"
    ) -> tuple[str, dict[str, Any]]:
        """The scope's manager over [since, until) (None: unbounded)."""
        clauses, params = between(f"{alias}.started_at", since, until)
        clauses.insert(0, "1 = 1")
        params |= sql_parameters(self.rules)
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


# -- whole units and raw edges -------------------------------------------------

Range = tuple[float | None, float | None]


@dataclass(frozen=True, slots=True)
class Split:
    """A period as whole units [first, end) of a rollup (None: unbounded;
    `whole` None when no unit fits) and the ranges of `started_at` at its
    ends that the rollup cannot answer, read from the calls themselves."""

    whole: tuple[int | None, int | None] | None
    raw: tuple[Range, ...]


def split_period(since: float | None, until: float | None, unit: int) -> Split:
    first = first_unit_from(since, unit) if since is not None else None
    end = unit_of(until, unit) if until is not None else None
    if first is not None and end is not None and first >= end:
        return Split(None, ((since, until),))
    raw: list[Range] = []
    if since is not None and first is not None and first * unit > since:
        raw.append((since, float(first * unit)))
    if until is not None and end is not None and end * unit < until:
        raw.append((float(end * unit), until))
    return Split((first, end), tuple(raw))


def _units(
    column: str, whole: tuple[int | None, int | None], scope: ReportScope
) -> tuple[str, dict[str, Any]]:
    """WHERE over a rollup's units (and the scope's manager)."""
    clauses, params = between(column, *whole, names=("first_unit", "end_unit"))
    clauses.insert(0, "1 = 1")
    if scope.manager is not None:
        clauses.append("manager = :manager")
        params["manager"] = scope.manager
    return " AND ".join(clauses), params


def _day_split(scope: ReportScope) -> Split:
    return split_period(seconds(scope.since), seconds(scope.until), DAY_S)


async def _edges_and_days(
    conn: aiosqlite.Connection,
    scope: ReportScope,
    from_calls: Callable[[str], str],
    from_days: Callable[[str], str],
) -> list[tuple[Any, ...]]:
    """The rows of one report over the scope's period: `from_calls(where)` over
    the partial days at its ends (read from the calls), `from_days(where)` over
    the whole days (read from the day rollups). The caller adds them up."""
    parts = _day_split(scope)
    rows: list[tuple[Any, ...]] = []
    for since, until in parts.raw:
        where, params = scope.where_between(since, until)
        rows += await _all(conn, from_calls(where), params)
    if parts.whole is not None:
        where, params = _units("day", parts.whole, scope)
        rows += await _all(conn, from_days(where), params)
    return rows


def _text(key: Any) -> str | None:
    """A rollup key back as the call had it: the empty blob (x'') was NULL."""
    return None if isinstance(key, bytes) else key


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


async def missed(conn: aiosqlite.Connection, scope: ReportScope, limit: int = 1000) -> MissedReport:
    counts = await _edges_and_days(
        conn,
        scope,
        lambda where: f"SELECT count(*) FROM calls c WHERE {where} AND {MISSED}",
        lambda where: (
            "SELECT coalesce(sum(calls - answered), 0) FROM call_days"
            f" WHERE {where} AND direction = 'inbound'"
        ),
    )
    count = sum(int(found) for (found,) in counts)
    where, params = scope.where()
    # Only the unprocessed calls, by time (the flag is kept by triggers).
    found = await _all(
        conn,
        f"SELECT count(*) FROM calls c INDEXED BY calls_unprocessed WHERE {where}"
        " AND c.unprocessed = 1",
        params,
    )
    unprocessed = int(found[0][0])
    rows = await _all(
        conn,
        f"SELECT {CALL_COLUMNS}, c.unprocessed AS unprocessed {CALLS_FROM}"
        f" WHERE {where} AND {MISSED}"
        " ORDER BY c.started_at DESC, c.id DESC LIMIT :limit",
        params | {"limit": limit},
    )
    calls = await map_in_slices(
        lambda row: MissedCall(CallRecord.from_row(row[:-1]), bool(row[-1])), rows
    )
    return MissedReport(count, unprocessed, calls, truncated=count > len(calls))


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
    # (code, manager) -> [largest name the calls carry, calls, value sum]
    groups: dict[tuple[str, str | None], list[Any]] = {}

    def add(code: str, name: str | None, manager: str | None, calls: int, value: float) -> None:
        group = groups.setdefault((code, manager), [None, 0, 0.0])
        if name is not None and (group[0] is None or name > group[0]):
            group[0] = name
        group[1] += int(calls)
        group[2] += float(value)

    for code, name, manager, calls, value in await _edges_and_days(
        conn,
        scope,
        lambda where: (
            "SELECT c.category_code, max(c.category_name), c.manager, count(*),"
            " total(CAST(c.value AS REAL)) FROM calls c"
            f" WHERE {where} AND c.category_code IS NOT NULL"
            " GROUP BY c.category_code, c.manager"
        ),
        lambda where: (
            "SELECT category_code, max(nullif(category_name, x'')), manager,"
            f" sum(calls), sum(value_sum) FROM category_days WHERE {where}"
            " GROUP BY category_code, manager"
        ),
    ):
        add(code, name, _text(manager), calls, value)  # a call's manager is text or NULL
    catalogue = dict(await _all(conn, "SELECT code, name FROM categories", {}))
    by_manager = [
        CategoryRow(code, _first(catalogue.get(code), name, code), manager, calls, round(total, 4))
        for (code, manager), (name, calls, total) in sorted(
            groups.items(),
            key=lambda item: (len(item[0][0]), item[0][0], item[0][1] is not None, item[0][1]),
        )
    ]
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


def _first(*names: str | None) -> str:
    """SQL's coalesce()."""
    return next(name for name in names if name is not None)


# -- hour of day x weekday -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class HourlyReport:
    """calls[weekday][hour] and missed[weekday][hour], Monday first, local time."""

    calls: list[list[int]]
    missed: list[list[int]]
    weekdays: tuple[str, ...] = WEEKDAYS


#: Added to local seconds so SQLite's integer division (which truncates)
#: floors them for any date datetime holds; a whole number of weeks, so the
#: hour of the week stays. Hour 0 of the week is Thursday 00:00 (1970-01-01).
_WEEK_S = 7 * DAY_S
_SHIFT_S = 102_800 * _WEEK_S


def offset_segments(zone: ZoneInfo, first: int, end: int) -> list[tuple[int, int, int]]:
    """[first, end) quarter hours as (start, end, UTC offset in seconds at each
    quarter's start) runs. One check per day, a bisection where it changed: a
    zone changing and changing back within one UTC day would be missed (none
    does)."""

    def offset(quarter: int) -> int:
        moment = datetime.fromtimestamp(quarter * QUARTER_S, zone)
        delta = moment.utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    per_day = DAY_S // QUARTER_S
    segments: list[tuple[int, int, int]] = []
    start, current, at = first, offset(first), first
    while at < end:
        last = min(at + per_day, end) - 1
        if offset(last) == current:
            at = last + 1
            continue
        low, high = at, last  # offset(high) differs; find the first that does
        while low < high:
            middle = (low + high) // 2
            if offset(middle) != current:
                high = middle
            else:
                low = middle + 1
        if low > start:
            segments.append((start, low, current))
        start, current, at = low, offset(low), low
    segments.append((start, end, current))
    return segments


async def hourly(conn: aiosqlite.Connection, scope: ReportScope) -> HourlyReport:
    calls = [[0] * 24 for _ in range(7)]
    missed_ = [[0] * 24 for _ in range(7)]

    def add(quarter: int, count: int, missed_count: int) -> None:
        local = datetime.fromtimestamp(quarter * QUARTER_S, UTC).astimezone(scope.zone)
        calls[local.weekday()][local.hour] += count
        missed_[local.weekday()][local.hour] += missed_count

    parts = split_period(seconds(scope.since), seconds(scope.until), QUARTER_S)
    for since, until in parts.raw:
        where, params = scope.where_between(since, until)
        for started_at, is_missed in await _all(
            conn, f"SELECT c.started_at, {MISSED} FROM calls c WHERE {where}", params
        ):
            add(unit_of(started_at, QUARTER_S), 1, int(is_missed or 0))
    if parts.whole is not None:
        table = "call_quarters" if scope.manager is None else "manager_quarters"
        where, params = _units("quarter", parts.whole, scope)
        found = await _all(
            conn, f"SELECT min(quarter), max(quarter) FROM {table} WHERE {where}", params
        )
        low, high = found[0]
        if low is not None:
            segments = offset_segments(scope.zone, int(low), int(high) + 1)
            cases = " ".join(
                f"WHEN quarter < {int(end)} THEN {int(offset)}" for _, end, offset in segments
            )
            local_hour = f"(quarter * {QUARTER_S} + CASE {cases} END + {_SHIFT_S}) / 3600"
            for hour_of_week, count, missed_count in await _all(
                conn,
                f"SELECT {local_hour} % 168, sum(calls), sum(missed) FROM {table}"
                f" WHERE {where} GROUP BY 1",
                params,
            ):
                day, hour = divmod(int(hour_of_week), 24)
                weekday = (day + 3) % 7  # hour 0 of the week is a Thursday
                calls[weekday][hour] += int(count)
                missed_[weekday][hour] += int(missed_count)
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


def _average_s(milliseconds: int, count: int) -> float | None:
    return round(milliseconds / 1000 / count, 2) if count else None


async def summary(conn: aiosqlite.Connection, scope: ReportScope) -> list[SummaryRow]:
    directions = ("inbound", "outbound")
    # direction -> calls, answered, wait ms, waits, talk ms, talks
    totals = {direction: [0] * 6 for direction in directions}

    def add(rows: Sequence[Sequence[Any]]) -> None:
        for direction, *counts in rows:
            for index, count in enumerate(counts):
                totals[direction][index] += int(count or 0)

    answered = "c.status = 'answered'"
    add(
        await _edges_and_days(
            conn,
            scope,
            lambda where: (
                f"SELECT c.direction, count(*), sum({answered}),"
                f" sum(CASE WHEN {answered} THEN {_WAIT_MS} END),"
                f" count(CASE WHEN {answered} THEN c.wait_s END),"
                f" sum(CASE WHEN {answered} THEN {_TALK_MS} END),"
                f" count(CASE WHEN {answered} THEN c.talk_s END)"
                f" FROM calls c WHERE {where} AND c.direction IN ('inbound', 'outbound')"
                " GROUP BY c.direction"
            ),
            lambda where: (
                "SELECT direction, sum(calls), sum(answered), sum(wait_ms),"
                f" sum(waits), sum(talk_ms), sum(talks) FROM call_days WHERE {where}"
                " AND direction IN ('inbound', 'outbound') GROUP BY direction"
            ),
        )
    )
    result = []
    for direction in directions:
        count, answered_count, wait_ms, waits, talk_ms, talks = totals[direction]
        result.append(
            SummaryRow(
                direction=direction,
                calls=count,
                answered=answered_count,
                missed=count - answered_count,
                answered_ratio=round(answered_count / count, 4) if count else None,
                avg_wait_s=_average_s(wait_ms, waits),
                avg_talk_s=_average_s(talk_ms, talks),
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
    counts: dict[str, list[int]] = {}

    def add(rows: Sequence[Sequence[Any]]) -> None:
        for manager, answered, categorized in rows:
            found = counts.setdefault(str(manager), [0, 0])
            found[0] += int(answered)
            found[1] += int(categorized)

    # `+c.status`: read calls_report (index-only) rather than calls_status.
    add(
        await _edges_and_days(
            conn,
            scope,
            lambda where: (
                "SELECT c.manager, count(*), count(c.category_code) FROM calls c"
                f" WHERE {where} AND +c.status = 'answered' AND c.manager IS NOT NULL"
                " GROUP BY c.manager"
            ),
            lambda where: (
                "SELECT manager, sum(answered), sum(categorized) FROM call_days"
                f" WHERE {where} AND typeof(manager) = 'text' GROUP BY manager"
            ),
        )
    )
    return [
        CoverageRow(manager, answered, categorized, round(categorized / answered, 4))
        for manager, (answered, categorized) in sorted(counts.items())
        if answered
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
    clauses, params = between("j.first_missed_at", seconds(scope.since), seconds(scope.until))
    clauses.insert(0, "1 = 1")
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
