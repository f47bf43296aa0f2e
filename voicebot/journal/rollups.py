"""Per-day and per-quarter-hour rollups of the call log, kept by SQLite itself.

Theory of operation. A report over a year of a million calls cannot read a
million index entries and answer in 500 ms; it sums a few hundred rows per
day instead. The rollups are tables of counters keyed by *UTC* units of the
call's `started_at`:

- `call_days` (UTC day, manager, direction): calls, answered, answered with a
  category, and the answered calls' wait and talk in whole milliseconds
  (integers: adding and taking away a call leaves no rounding residue);
- `category_days` (UTC day, code, name, manager): calls and value sum;
- `call_quarters` (UTC quarter hour) and `manager_quarters` (manager,
  quarter hour): calls and missed calls, for the hour x weekday report.

Rules it keeps:

1. They never drift from `calls`: triggers on `calls` update them inside the
   statement that writes the call, so in its transaction, whoever writes (the
   call log, a CDR import, the callback dialler, a hand-run UPDATE). An update
   takes the old row out and puts the new one in; an update of a categorized
   call recounts that day's group from the calls themselves (a value sum is a
   float, and a float taken away leaves residue).
2. UTC, never local days: SQL has no time zone database, so a trigger can
   only bucket by UTC. The reports (voicebot/journal/reports.py) sum the whole
   UTC days (or quarter hours) inside a period and read the partial units at
   its two ends from `calls` (at most two partial days, through the covering
   indexes of migration 4). So any `journal.timezone` works, a change of it
   needs no rebuild, and a period may start at any instant. Every zone in use
   is offset from UTC by whole quarter hours, which is why a quarter-hour
   bucket maps to exactly one local hour whatever DST does.
3. A column that is NULL in `calls` is keyed as the empty blob `x''` (manager,
   category name) or `''` (direction, whose CHECK forbids ''): NULLs are never
   equal to each other, so they cannot be part of a key that an upsert meets.
   A blob never equals text, so no real manager collides with "no manager".
4. Days and quarters are `floor(started_at / unit)`, computed exactly (the
   float quotient is corrected by comparing with the unit's bounds), so a
   call is in the day whose `[day * 86400, (day + 1) * 86400)` holds it: the
   raw edges of a period, read by `started_at`, meet the days without a gap
   or an overlap.

`calls.unprocessed` is the other maintained fact: 1 on a missed call (inbound,
not answered) that no answered call with the same client followed (or whose
client is unknown), 0 on a missed call that one did, NULL on any other call.
"Followed" depends on later calls, so the triggers move it when an answered
call arrives, changes or goes: a missed call is unprocessed exactly when it
started at or after the client's latest answered call. Two partial indexes
hold only the unprocessed calls: by time (the report's count) and by client
(what an answered call clears).

These statements are journal migration 5 (voicebot/journal/migrations.py):
never edit them once released; change them with a new migration.
"""

from __future__ import annotations

import math

DAY_S = 86400
QUARTER_S = 900
TABLES = ("call_days", "category_days", "call_quarters", "manager_quarters")


def unit_sql(expr: str, unit: int) -> str:
    """Exact `floor(expr / unit)` in SQL (3.40 has no portable floor()): the
    truncated float quotient, corrected by comparing `expr` with its bounds."""
    t = f"CAST({expr} / {unit}.0 AS INTEGER)"
    return f"({t} - ({expr} < {t} * {unit}) + ({expr} >= ({t} + 1) * {unit}))"


def unit_of(seconds: float, unit: int) -> int:
    """`unit_sql` in Python: the unit holding the instant `seconds`."""
    index = math.floor(seconds / unit)
    if seconds < index * unit:
        index -= 1
    elif seconds >= (index + 1) * unit:
        index += 1
    return index


def first_unit_from(seconds: float, unit: int) -> int:
    """The first unit that starts at or after `seconds`."""
    index = unit_of(seconds, unit)
    return index if index * unit == seconds else index + 1


def _ms(expr: str) -> str:
    return f"CAST(round({expr} * 1000) AS INTEGER)"


def _day(row: str) -> str:
    return unit_sql(f"{row}.started_at", DAY_S)


def _quarter(row: str) -> str:
    return unit_sql(f"{row}.started_at", QUARTER_S)


def _answered(row: str) -> str:
    return f"({row}.status = 'answered')"


def _missed(row: str) -> str:
    # IS, not =: a call without a direction counts 0, never NULL.
    return f"({row}.direction IS 'inbound' AND {row}.status != 'answered')"


# -- tables ----------------------------------------------------------------------

CREATE_TABLES: tuple[str, ...] = (
    """
    CREATE TABLE call_days (
        day          INTEGER NOT NULL,  -- floor(started_at / 86400): the UTC day
        manager      TEXT NOT NULL,     -- x'' for calls without a manager
        direction    TEXT NOT NULL,     -- '' for calls without a direction
        calls        INTEGER NOT NULL,
        answered     INTEGER NOT NULL,
        categorized  INTEGER NOT NULL,  -- answered calls with a category
        wait_ms      INTEGER NOT NULL,  -- answered calls: sum of wait_s, in ms
        waits        INTEGER NOT NULL,  -- answered calls with a wait_s
        talk_ms      INTEGER NOT NULL,
        talks        INTEGER NOT NULL,
        PRIMARY KEY (day, manager, direction)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE category_days (
        day            INTEGER NOT NULL,
        category_code  TEXT NOT NULL,
        category_name  TEXT NOT NULL,   -- x'' when the call has none
        manager        TEXT NOT NULL,   -- x'' when the call has none
        calls          INTEGER NOT NULL,
        value_sum      REAL NOT NULL,   -- total(CAST(value AS REAL))
        PRIMARY KEY (day, category_code, category_name, manager)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE call_quarters (
        quarter  INTEGER PRIMARY KEY,  -- floor(started_at / 900)
        calls    INTEGER NOT NULL,
        missed   INTEGER NOT NULL
    )
    """,
    """
    CREATE TABLE manager_quarters (
        manager  TEXT NOT NULL,
        quarter  INTEGER NOT NULL,
        calls    INTEGER NOT NULL,
        missed   INTEGER NOT NULL,
        PRIMARY KEY (manager, quarter)
    ) WITHOUT ROWID
    """,
    "ALTER TABLE calls ADD COLUMN unprocessed INTEGER",
)

# -- what one call adds -------------------------------------------------------------


_DAY_COUNTERS = ("calls", "answered", "categorized", "wait_ms", "waits", "talk_ms", "talks")


def _day_counts(row: str) -> list[str]:
    """What the call `row` adds to each of `_DAY_COUNTERS`."""
    answered = _answered(row)
    return [
        "1",
        answered,
        f"({answered} AND {row}.category_code IS NOT NULL)",
        f"CASE WHEN {answered} THEN coalesce({_ms(f'{row}.wait_s')}, 0) ELSE 0 END",
        f"({answered} AND {row}.wait_s IS NOT NULL)",
        f"CASE WHEN {answered} THEN coalesce({_ms(f'{row}.talk_s')}, 0) ELSE 0 END",
        f"({answered} AND {row}.talk_s IS NOT NULL)",
    ]


def _day_key(row: str) -> list[str]:
    return [_day(row), f"coalesce({row}.manager, x'')", f"coalesce({row}.direction, '')"]


def _add_call(row: str) -> tuple[str, ...]:
    """Statements (a trigger's body) that count the call `row` (NEW) in."""
    add = ", ".join(f"{c} = {c} + excluded.{c}" for c in _DAY_COUNTERS)
    missed = _missed(row)
    return (
        f"INSERT INTO call_days VALUES ({', '.join(_day_key(row) + _day_counts(row))})"
        f" ON CONFLICT (day, manager, direction) DO UPDATE SET {add}",
        f"INSERT INTO call_quarters VALUES ({_quarter(row)}, 1, {missed})"
        " ON CONFLICT (quarter) DO UPDATE SET calls = calls + 1, missed = missed + excluded.missed",
        f"INSERT INTO manager_quarters SELECT {row}.manager, {_quarter(row)}, 1, {missed}"
        f" WHERE {row}.manager IS NOT NULL"
        " ON CONFLICT (manager, quarter) DO UPDATE SET calls = calls + 1,"
        " missed = missed + excluded.missed",
    )


def _take_call(row: str) -> tuple[str, ...]:
    """Statements that count the call `row` (OLD) out, dropping emptied rows."""
    day, manager, direction = _day_key(row)
    day_key = f"day = {day} AND manager = {manager} AND direction = {direction}"
    take = ", ".join(
        f"{c} = {c} - {v}" for c, v in zip(_DAY_COUNTERS, _day_counts(row), strict=True)
    )
    quarter_key = f"quarter = {_quarter(row)}"
    manager_key = f"manager = {row}.manager AND {quarter_key}"
    minus = f"calls = calls - 1, missed = missed - {_missed(row)}"
    return (
        f"UPDATE call_days SET {take} WHERE {day_key}",
        f"DELETE FROM call_days WHERE {day_key} AND calls = 0",
        f"UPDATE call_quarters SET {minus} WHERE {quarter_key}",
        f"DELETE FROM call_quarters WHERE {quarter_key} AND calls = 0",
        f"UPDATE manager_quarters SET {minus} WHERE {manager_key}",
        f"DELETE FROM manager_quarters WHERE {manager_key} AND calls = 0",
    )


def _add_category(row: str) -> str:
    return (
        "INSERT INTO category_days SELECT"
        f" {_day(row)}, {row}.category_code, coalesce({row}.category_name, x''),"
        f" coalesce({row}.manager, x''), 1, coalesce(CAST({row}.value AS REAL), 0.0)"
        f" WHERE {row}.category_code IS NOT NULL"
        " ON CONFLICT (day, category_code, category_name, manager) DO UPDATE SET"
        " calls = calls + 1, value_sum = value_sum + excluded.value_sum"
    )


def _recount_category(row: str) -> tuple[str, ...]:
    """Statements that recount the category_days group of `row` (OLD or NEW)
    from the calls themselves (after an update or a delete)."""
    day = _day(row)
    key = (
        f"day = {day} AND category_code = {row}.category_code"
        f" AND category_name = coalesce({row}.category_name, x'')"
        f" AND manager = coalesce({row}.manager, x'')"
    )
    return (
        f"DELETE FROM category_days WHERE {key}",
        "INSERT INTO category_days SELECT"
        f" {day}, {row}.category_code, coalesce({row}.category_name, x''),"
        f" coalesce({row}.manager, x''), n, v FROM (SELECT count(*) AS n,"
        " total(CAST(c.value AS REAL)) AS v"
        f" FROM calls c WHERE c.started_at >= {day} * {DAY_S}"
        f" AND c.started_at < ({day} + 1) * {DAY_S}"
        f" AND c.category_code = {row}.category_code"
        f" AND c.category_name IS {row}.category_name AND c.manager IS {row}.manager)"
        f" WHERE n > 0 AND {row}.category_code IS NOT NULL",
    )


# -- unprocessed ------------------------------------------------------------------------


def _latest_answer(client: str) -> str:
    # Walks the client's calls newest first (calls_client_status) to the first
    # answered one: max() with the status filter would read all of them.
    return (
        f"(SELECT a.started_at FROM calls a WHERE a.client_number = {client}"
        " AND a.status = 'answered' ORDER BY a.started_at DESC LIMIT 1)"
    )


def _unprocessed_now(row: str) -> str:
    """The flag `row` should carry, from the calls as they are now."""
    return (
        f"CASE WHEN {_missed(row)} THEN ({row}.client_number IS NULL OR NOT EXISTS ("
        f"SELECT 1 FROM calls a WHERE a.client_number = {row}.client_number"
        f" AND +a.status = 'answered' AND a.started_at > {row}.started_at)) END"
    )


def _reflag_client(client: str) -> tuple[str, ...]:
    """Statements that bring the flags of one client's missed calls in line
    with its latest answered call, touching only the calls that change: the
    unprocessed ones before it (partial index by client) and the processed
    ones after it (the client's calls since its latest answer)."""
    latest = _latest_answer(client)
    return (
        f"UPDATE calls SET unprocessed = 0 WHERE client_number = {client}"
        f" AND unprocessed = 1 AND started_at < {latest}",
        f"UPDATE calls SET unprocessed = 1 WHERE client_number = {client}"
        f" AND unprocessed = 0 AND started_at >= coalesce({latest}, -1e308)",
    )


# -- triggers ---------------------------------------------------------------------------

#: Columns the counters read; an UPDATE that sets none of them (the unique
#: gaps, the flag itself) fires no rollup trigger.
_COUNTED = ("started_at", "manager", "direction", "status", "category_code", "wait_s", "talk_s")
_CATEGORY = ("started_at", "manager", "category_code", "category_name", "value")
_FLAGGED = ("started_at", "direction", "status", "client_number")


def _changed(columns: tuple[str, ...]) -> str:
    return " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in columns)


def _trigger(name: str, event: str, when: str | None, body: tuple[str, ...]) -> str:
    condition = f" WHEN {when}" if when else ""
    statements = "".join(f"    {statement};\n" for statement in body)
    return f"CREATE TRIGGER {name} {event} ON calls{condition}\nBEGIN\n{statements}END"


CREATE_TRIGGERS: tuple[str, ...] = (
    _trigger("calls_rollup_insert", "AFTER INSERT", None, _add_call("NEW")),
    _trigger(
        "calls_rollup_update",
        f"AFTER UPDATE OF {', '.join(_COUNTED)}",
        _changed(_COUNTED),
        (*_take_call("OLD"), *_add_call("NEW")),
    ),
    _trigger("calls_rollup_delete", "AFTER DELETE", None, _take_call("OLD")),
    _trigger(
        "calls_category_insert",
        "AFTER INSERT",
        "NEW.category_code IS NOT NULL",
        (_add_category("NEW"),),
    ),
    _trigger(
        "calls_category_update",
        f"AFTER UPDATE OF {', '.join(_CATEGORY)}",
        f"(OLD.category_code IS NOT NULL OR NEW.category_code IS NOT NULL)"
        f" AND ({_changed(_CATEGORY)})",
        (*_recount_category("OLD"), *_recount_category("NEW")),
    ),
    _trigger(
        "calls_category_delete",
        "AFTER DELETE",
        "OLD.category_code IS NOT NULL",
        _recount_category("OLD"),
    ),
    _trigger(
        "calls_unprocessed_insert",
        "AFTER INSERT",
        _missed("NEW"),
        (f"UPDATE calls SET unprocessed = {_unprocessed_now('NEW')} WHERE id = NEW.id",),
    ),
    _trigger(
        "calls_processed_insert",
        "AFTER INSERT",
        "NEW.status = 'answered' AND NEW.client_number IS NOT NULL",
        (
            "UPDATE calls SET unprocessed = 0 WHERE client_number = NEW.client_number"
            " AND unprocessed = 1 AND started_at < NEW.started_at",
        ),
    ),
    _trigger(
        "calls_unprocessed_update",
        f"AFTER UPDATE OF {', '.join(_FLAGGED)}",
        _changed(_FLAGGED),
        (
            f"UPDATE calls SET unprocessed = {_unprocessed_now('calls')} WHERE id = NEW.id",
            *_reflag_client("NEW.client_number"),
            *_reflag_client("OLD.client_number"),
        ),
    ),
    _trigger(
        "calls_unprocessed_delete",
        "AFTER DELETE",
        "OLD.client_number IS NOT NULL",
        _reflag_client("OLD.client_number"),
    ),
)

# -- building them for the calls already there ----------------------------------------------


def _build_days() -> str:
    sums = ", ".join(f"coalesce(sum({count}), 0)" for count in _day_counts("c")[1:])
    return (
        f"INSERT INTO call_days SELECT {', '.join(_day_key('c'))}, count(*), {sums}"
        " FROM calls c GROUP BY 1, 2, 3"
    )


BUILD: tuple[str, ...] = (
    _build_days(),
    "INSERT INTO category_days SELECT"
    f" {_day('c')}, c.category_code, coalesce(c.category_name, x''), coalesce(c.manager, x''),"
    " count(*), total(CAST(c.value AS REAL))"
    " FROM calls c WHERE c.category_code IS NOT NULL GROUP BY 1, 2, 3, 4",
    f"INSERT INTO call_quarters SELECT {_quarter('c')}, count(*), sum({_missed('c')})"
    " FROM calls c GROUP BY 1",
    f"INSERT INTO manager_quarters SELECT c.manager, {_quarter('c')}, count(*),"
    f" sum({_missed('c')}) FROM calls c WHERE c.manager IS NOT NULL GROUP BY 1, 2",
    f"UPDATE calls SET unprocessed = {_unprocessed_now('calls')}"
    " WHERE direction = 'inbound' AND status != 'answered'",
)

CREATE_INDEXES: tuple[str, ...] = (
    # The missed report's unprocessed count: only the unprocessed calls, by time.
    "CREATE INDEX calls_unprocessed ON calls (started_at, manager) WHERE unprocessed = 1",
    # What an answered call clears: that client's unprocessed calls.
    "CREATE INDEX calls_unprocessed_client ON calls (client_number, started_at)"
    " WHERE unprocessed = 1",
)

#: Journal migration 5, in order: tables, their contents from the calls there
#: are, the indexes, then the triggers that keep them from now on.
MIGRATION: tuple[str, ...] = (*CREATE_TABLES, *BUILD, *CREATE_INDEXES, *CREATE_TRIGGERS)

TRIGGER_NAMES: tuple[str, ...] = tuple(s.split()[2] for s in CREATE_TRIGGERS)
