"""Call journal at scale: list and report latency over HTTP at 1 000 000 calls,
the reports' figures against the direct SQL over the raw rows, and the cost
of a write through the real path.

    python bench/journal.py [--calls 1000000] [--days 365] [--requests 60]
                            [--writes 2000] [--db PATH] [--keep]

1. Seeds a fresh SQLite file (migrated by `open_database`, categories seeded
   by the app's first start) with `--calls` calls spread over `--days` days
   ending now: 60 % inbound, 30 % outbound, 10 % internal; 150 000 client
   numbers with a long tail (a few call often), 40 managers, a category on
   half the answered calls, 1 % callbacks. Rows go in with `executemany` in
   one transaction per 100 000, with journal migration 4's indexes and
   migration 5's triggers dropped; the unique/repeated gaps are then computed
   in one SQL statement (a window function), as the call log keeps them.
2. Builds what migrations 4 and 5 build on an existing journal (the
   indexes; the rollups and the unprocessed flags, with migration 5's own
   statements) and prints how long that took: an upgrade's cost at 1 M calls.
3. Starts the real app (`VoicebotApp`: aiohttp on 127.0.0.1, bearer token)
   on that file and times, sequentially, `--requests` requests of each:
   `GET /api/v1/calls` (first page, a deep cursor 90 % of the way down,
   filters), every report over 7 days (the default), 30 days and the whole
   span, and the dashboard. p50 / p99 / max in ms.
4. Computes each report over 7 / 30 / whole-span days both ways in-process:
   the rollups (what the endpoints serve) and the direct SQL over the raw
   rows the reports ran before migration 5 (kept below as `direct_*`), and
   prints both times, the ratio and whether every figure is the same.
5. Writes `--writes` new calls through `CallLog.record_call_event` (what
   `POST /api/v1/calls/events` calls), and re-sends a tenth of the missed
   ones as answered (a missed call later answered: an update), in
   alternating blocks on migration 5's schema and on migration 4's (no
   triggers; calls_buckets back): calls/s both ways.
6. Prints the database size, and the rollup tables' share.

Targets (issue 7): p99 <= 50 ms for the list, <= 500 ms for any report.
Numbers are printed, not asserted (DESIGN.md §5).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import aiosqlite
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ports import rtp_window
from voicebot.app import VoicebotApp
from voicebot.journal import migrations, reports, rollups
from voicebot.journal.call_events import CallEvent
from voicebot.journal.call_types import SQL_PREDICATES, TypeRules
from voicebot.journal.calls import CALL_COLUMNS, CALLS_FROM, CallLog, CallRecord
from voicebot.journal.reports import ReportScope
from voicebot.settings import Settings

TOKEN = "bench-token"
ZONE = "Europe/Kyiv"
RULES = TypeRules.from_settings(30, 30)
CHUNK = 100_000
CLIENTS = 150_000
MANAGERS = [str(200 + n) for n in range(40)]
CODES = [("1", "100"), ("2", "0"), ("3", "250.5"), ("9", "0")]

#: Journal migration 4's indexes, dropped while seeding and built after.
INDEXES_4: tuple[str, ...] = dict(migrations.MIGRATIONS)[4]
REPORTS: dict[str, Callable[[aiosqlite.Connection, ReportScope], Awaitable[Any]]] = {
    "missed": reports.missed,
    "categories": reports.categories,
    "hourly": reports.hourly,
    "summary": reports.summary,
    "coverage": reports.coverage,
}


def settings_for(database: Path) -> Settings:
    rtp_min, rtp_max = rtp_window(1)
    return Settings(
        sip={"mode": "peer", "bind_host": "127.0.0.1", "bind_port": 0,
             "rtp_port_min": rtp_min, "rtp_port_max": rtp_max},
        storage={"database": database},
        http={"host": "127.0.0.1", "port": 0, "api_token": TOKEN},
        journal={"unique_window_days": 30, "target_min_talk_s": 30, "timezone": ZONE},
    )  # fmt: skip


# -- seeding ------------------------------------------------------------------


def _client(rng: random.Random) -> str:
    # A long tail: a tenth of the numbers make half the calls.
    n = int(rng.paretovariate(1.2)) % CLIENTS if rng.random() < 0.5 else rng.randrange(CLIENTS)
    return f"+38050{n:07d}"


def _rows(rng: random.Random, count: int, start: float, span: float, first_id: int) -> list[tuple]:
    """`count` calls in [start, start + span), in time order as a PBX reports them."""
    rows = []
    times = sorted(start + rng.random() * span for _ in range(count))
    for i, started in enumerate(times):
        kind = rng.random()
        direction = "inbound" if kind < 0.6 else "outbound" if kind < 0.9 else "internal"
        client = _client(rng) if direction != "internal" else None
        if rng.random() < 0.01:
            client = None if direction == "inbound" else client  # anonymous callers
        roll = rng.random()
        status = (
            "answered" if roll < 0.75 else "missed" if roll < 0.9 else "busy" if roll < 0.95
            else "failed"
        )  # fmt: skip
        manager = rng.choice(MANAGERS) if status == "answered" or rng.random() < 0.5 else None
        wait = round(rng.uniform(0, 40), 1)
        talk = round(rng.expovariate(1 / 90), 1) if status == "answered" else 0.0
        answered_at = started + wait if status == "answered" else None
        ended_at = started + wait + talk
        code = value = name = None
        if status == "answered" and manager is not None and rng.random() < 0.5:
            code, value = rng.choice(CODES)
            name = f"category {code}"
        is_callback = int(direction == "outbound" and rng.random() < 0.03)
        rows.append(
            (first_id + i, "pbx", f"pbx-{first_id + i}", direction, client, "+380440000000",
             "+380440000000", client, manager, status, started, answered_at, ended_at, wait,
             talk, is_callback, code, name, value, started, started)
        )  # fmt: skip
    return rows


def seed(database: Path, calls: int, days: int, seed_value: int = 7) -> float:
    began = time.perf_counter()
    rng = random.Random(seed_value)
    end = time.time()
    start = end - days * 86400
    conn = sqlite3.connect(database, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    insert = (
        "INSERT INTO calls (id, source, pbx_call_id, direction, caller, callee, company_number,"
        " client_number, manager, status, started_at, answered_at, ended_at, wait_s, talk_s,"
        " is_callback, category_code, category_name, value, recorded_at, updated_at)"
        " VALUES (" + ", ".join("?" * 21) + ")"
    )
    done = 0
    while done < calls:
        count = min(CHUNK, calls - done)
        # Each chunk is its share of the span, so ids grow with time.
        slice_start = start + (end - start) * done / calls
        rows = _rows(rng, count, slice_start, (end - start) * count / calls, done + 1)
        conn.execute("BEGIN")
        conn.executemany(insert, rows)
        conn.execute("COMMIT")
        done += count
        print(f"\r  seeded {done:,} calls", end="", flush=True)
    print()
    # What CallLog._place_in_history keeps per insert, for all rows at once.
    conn.execute("BEGIN")
    conn.execute(
        "UPDATE calls SET prev_inbound_gap_s = g.gap FROM ("
        " SELECT id, started_at - lag(started_at) OVER ("
        "  PARTITION BY client_number ORDER BY started_at, id) AS gap"
        " FROM calls WHERE direction = 'inbound' AND client_number IS NOT NULL) AS g"
        " WHERE calls.id = g.id AND g.gap IS NOT NULL"
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - began


def _name(statement: str, kind: str) -> str:
    words = statement.split()
    return words[words.index(kind) + 1]


def drop_for_seeding(database: Path) -> None:
    """Migration 4's indexes and migration 5's triggers and indexes off, its
    tables emptied: the seed goes in as a journal of before migration 5."""
    with sqlite3.connect(database) as conn:
        for statement in INDEXES_4:
            conn.execute(f"DROP INDEX IF EXISTS {_name(statement, 'INDEX')}")
        for statement in rollups.CREATE_INDEXES:
            conn.execute(f"DROP INDEX IF EXISTS {_name(statement, 'INDEX')}")
        for name in rollups.TRIGGER_NAMES:
            conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        for table in rollups.TABLES:
            conn.execute(f"DELETE FROM {table}")


def build_as_migrations(database: Path) -> tuple[float, float]:
    """What migrations 4 and 5 do to an existing journal (minus calls_buckets,
    which 5 drops): seconds for the indexes, and for the rollups, the flags,
    migration 5's indexes and triggers."""
    with sqlite3.connect(database) as conn:
        began = time.perf_counter()
        for statement in INDEXES_4:
            if _name(statement, "INDEX") != "calls_buckets":
                conn.execute(statement)
        indexed = time.perf_counter()
        conn.execute("BEGIN")
        for statement in (*rollups.BUILD, *rollups.CREATE_INDEXES, *rollups.CREATE_TRIGGERS):
            conn.execute(statement)
        conn.execute("COMMIT")
        built = time.perf_counter()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return indexed - began, built - indexed


def size_mb(database: Path) -> float:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{database}{suffix}")
        if path.exists():
            total += path.stat().st_size
    return total / 1e6


def rollup_mb(database: Path) -> float | None:
    """The rollup tables' and migration 5's indexes' pages (dbstat, when SQLite has it)."""
    names = (*rollups.TABLES, *(_name(s, "INDEX") for s in rollups.CREATE_INDEXES))
    try:
        with sqlite3.connect(database) as conn:
            found = conn.execute(
                f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({', '.join('?' * len(names))})",
                names,
            ).fetchone()
    except sqlite3.Error:
        return None
    return (found[0] or 0) / 1e6


# -- the reports as they were: direct SQL over the raw rows --------------------------
# Verbatim the queries of voicebot/journal/reports.py before migration 5 (with
# migration 4's indexes), for the figures and the time they take.

_MISSED = SQL_PREDICATES["missed"]
_UNPROCESSED = (
    "(c.client_number IS NULL OR NOT EXISTS (SELECT 1 FROM calls a"
    " WHERE a.client_number = c.client_number AND +a.status = 'answered'"
    " AND a.started_at > c.started_at))"
)


async def _all(conn: aiosqlite.Connection, sql: str, params: dict[str, Any]) -> list[tuple]:
    async with conn.execute(sql, params) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


async def direct_missed(conn: aiosqlite.Connection, scope: ReportScope) -> reports.MissedReport:
    where, params = scope.where()
    totals = await _all(
        conn,
        f"SELECT count(*), coalesce(sum({_UNPROCESSED}), 0) FROM calls c"
        f" WHERE {where} AND {_MISSED}",
        params,
    )
    rows = await _all(
        conn,
        f"SELECT {CALL_COLUMNS}, {_UNPROCESSED} AS unprocessed {CALLS_FROM}"
        f" WHERE {where} AND {_MISSED} ORDER BY c.started_at DESC, c.id DESC LIMIT 1000",
        params,
    )
    calls = [reports.MissedCall(CallRecord.from_row(r[:-1]), bool(r[-1])) for r in rows]
    count, unprocessed = totals[0]
    return reports.MissedReport(int(count), int(unprocessed), calls, count > len(calls))


async def direct_categories(
    conn: aiosqlite.Connection, scope: ReportScope
) -> reports.CategoryReport:
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
    by_manager = [
        reports.CategoryRow(r[0], r[1], r[2], int(r[3]), round(float(r[4]), 4)) for r in rows
    ]
    totals: dict[str, reports.CategoryRow] = {}
    for row in by_manager:
        seen = totals.get(row.code)
        totals[row.code] = reports.CategoryRow(
            row.code, row.name, None, row.calls + (seen.calls if seen else 0),
            round(row.value_sum + (seen.value_sum if seen else 0.0), 4),
        )  # fmt: skip
    return reports.CategoryReport(by_manager, list(totals.values()))


async def direct_hourly(conn: aiosqlite.Connection, scope: ReportScope) -> reports.HourlyReport:
    where, params = scope.where()
    bucket = "CAST(c.started_at / 900 AS INTEGER)"
    rows = await _all(
        conn,
        f"SELECT {bucket}, count(*), sum({_MISSED}) FROM calls c WHERE {where} GROUP BY {bucket}",
        params,
    )
    calls = [[0] * 24 for _ in range(7)]
    missed = [[0] * 24 for _ in range(7)]
    for quarter, count, missed_count in rows:
        local = datetime.fromtimestamp(quarter * 900, UTC).astimezone(scope.zone)
        calls[local.weekday()][local.hour] += int(count)
        missed[local.weekday()][local.hour] += int(missed_count or 0)
    return reports.HourlyReport(calls, missed)


async def direct_summary(
    conn: aiosqlite.Connection, scope: ReportScope
) -> list[reports.SummaryRow]:
    where, params = scope.where()
    columns = []
    for direction in ("inbound", "outbound"):
        mine = f"c.direction = '{direction}'"
        answered = f"{mine} AND c.status = 'answered'"
        columns += [f"sum({mine})", f"sum({answered})",
                    f"avg(CASE WHEN {answered} THEN c.wait_s END)",
                    f"avg(CASE WHEN {answered} THEN c.talk_s END)"]  # fmt: skip
    found = (
        await _all(
            conn,
            f"SELECT {', '.join(columns)} FROM calls c"
            f" WHERE {where} AND c.direction IN ('inbound', 'outbound')",
            params,
        )
    )[0]
    result = []
    for index, direction in enumerate(("inbound", "outbound")):
        count, answered, wait, talk = found[index * 4 : index * 4 + 4]
        count, answered = int(count or 0), int(answered or 0)
        result.append(
            reports.SummaryRow(
                direction, count, answered, count - answered,
                round(answered / count, 4) if count else None,
                round(wait, 2) if wait is not None else None,
                round(talk, 2) if talk is not None else None,
            )
        )  # fmt: skip
    return result


async def direct_coverage(
    conn: aiosqlite.Connection, scope: ReportScope
) -> list[reports.CoverageRow]:
    where, params = scope.where()
    rows = await _all(
        conn,
        "SELECT c.manager, count(*), count(c.category_code) FROM calls c"
        f" WHERE {where} AND +c.status = 'answered' AND c.manager IS NOT NULL"
        " GROUP BY c.manager ORDER BY c.manager",
        params,
    )
    return [
        reports.CoverageRow(str(m), int(n), int(k), round(int(k) / int(n), 4) if n else 0.0)
        for m, n, k in rows
    ]


DIRECT = {
    "missed": direct_missed,
    "categories": direct_categories,
    "hourly": direct_hourly,
    "summary": direct_summary,
    "coverage": direct_coverage,
}


def _comparable(name: str, report: Any) -> Any:
    if name == "missed":
        calls = [(m.call.id, m.unprocessed) for m in report.calls]
        return (report.missed, report.unprocessed, report.truncated, calls)
    return report


async def against_direct(
    database: Path, days: int
) -> list[tuple[str, int, float, float, bool, str]]:
    """(report, days, rollup ms, direct ms, same figures, first difference)."""
    log = await CallLog.open(database, RULES)
    zone = ZoneInfo(ZONE)
    today = datetime.now(zone).date()
    found = []
    try:
        for name, report in REPORTS.items():
            for span in (7, 30, days):
                since = datetime.combine(
                    today - timedelta(days=span - 1), datetime.min.time(), zone
                )
                scope = ReportScope(since, None, zone, RULES)
                timed = []
                for run in (report, DIRECT[name]):
                    began = time.perf_counter()
                    result = await run(log.connection, scope)
                    timed.append(((time.perf_counter() - began) * 1000, result))
                (fast_ms, fast), (direct_ms, direct) = timed
                same = _comparable(name, fast) == _comparable(name, direct)
                note = (
                    "" if same else _difference(_comparable(name, fast), _comparable(name, direct))
                )
                found.append((name, span, fast_ms, direct_ms, same, note))
    finally:
        await log.close()
    return found


def _difference(fast: Any, direct: Any) -> str:
    text_fast, text_direct = repr(fast), repr(direct)
    at = next(
        (i for i, (a, b) in enumerate(zip(text_fast, text_direct, strict=False)) if a != b), 0
    )
    start = max(0, at - 40)
    return f"rollups {text_fast[start : at + 40]!r} direct {text_direct[start : at + 40]!r}"


# -- write cost through the real path ----------------------------------------------------


def _events(rng: random.Random, count: int, prefix: str) -> list[CallEvent]:
    """New calls of the seed's mix, in the last hours, in time order."""
    now = time.time()
    events = []
    for i in range(count):
        started = datetime.fromtimestamp(now - 3600 + i * 3600 / count, UTC)
        kind = rng.random()
        direction = "inbound" if kind < 0.6 else "outbound" if kind < 0.9 else "internal"
        number = _client(rng) if direction != "internal" else "101"
        roll = rng.random()
        status = "answered" if roll < 0.75 else "missed" if roll < 0.9 else "busy"
        wait = timedelta(seconds=round(rng.uniform(0, 40), 1))
        talk = timedelta(seconds=round(rng.expovariate(1 / 90), 1))
        answered = started + wait if status == "answered" else None
        events.append(
            CallEvent(
                call_id=f"{prefix}-{i}", direction=direction,
                caller=number if direction == "inbound" else "+380440000000",
                callee="+380440000000" if direction == "inbound" else number,
                status=status, started_at=started, answered_at=answered,
                ended_at=(answered + talk) if answered else started + wait,
                manager=rng.choice(MANAGERS) if status == "answered" else None,
            )
        )  # fmt: skip
    return events


async def write_cost(
    database: Path, writes: int, blocks: int = 8
) -> dict[str, tuple[float, float]]:
    """state -> (inserts/s, updates/s), alternating blocks on migration 5's
    schema and on migration 4's (no triggers, no partial indexes of 5, the
    calls_buckets index 5 drops), so neither state gets the warmer cache.
    Leaves migration 5's schema."""
    rng = random.Random(11)
    log = await CallLog.open(database, RULES)
    conn = log.connection
    spent: dict[str, list[float]] = {"migration 5": [0.0, 0.0], "migration 4": [0.0, 0.0]}
    counts: dict[str, list[int]] = {"migration 5": [0, 0], "migration 4": [0, 0]}
    buckets = next(s for s in INDEXES_4 if _name(s, "INDEX") == "calls_buckets")
    try:
        for block in range(blocks):
            state = "migration 5" if block % 2 == 0 else "migration 4"
            if state == "migration 4":
                for name in rollups.TRIGGER_NAMES:
                    await conn.execute(f"DROP TRIGGER {name}")
                for statement in rollups.CREATE_INDEXES:
                    await conn.execute(f"DROP INDEX {_name(statement, 'INDEX')}")
                await conn.execute(buckets)
            events = _events(rng, writes // blocks, f"w{block}")
            began = time.perf_counter()
            for event in events:
                await log.record_call_event(event)
            spent[state][0] += time.perf_counter() - began
            counts[state][0] += len(events)
            # A tenth of the missed ones come again, answered.
            later = [e for e in events if e.status != "answered"][: len(events) // 10]
            began = time.perf_counter()
            for event in later:
                answered = event.started_at + timedelta(seconds=5)
                await log.record_call_event(
                    event.model_copy(
                        update={"status": "answered", "answered_at": answered,
                                "ended_at": answered + timedelta(seconds=60),
                                "manager": MANAGERS[0]}
                    )
                )  # fmt: skip
            spent[state][1] += time.perf_counter() - began
            counts[state][1] += len(later)
            if state == "migration 4":
                await conn.execute("DROP INDEX calls_buckets")
                for statement in (*rollups.CREATE_INDEXES, *rollups.CREATE_TRIGGERS):
                    await conn.execute(statement)
    finally:
        await log.close()
    return {
        state: (counts[state][0] / spent[state][0], counts[state][1] / spent[state][1])
        for state in spent
    }


# -- query plans -----------------------------------------------------------------


async def report_plans(database: Path, now: datetime, days: int) -> list[tuple[str, list[str]]]:
    """Each report's queries over the whole span as they run (SQL traced), with their plans."""
    log = await CallLog.open(database, RULES)
    traced: list[str] = []
    await log.connection.set_trace_callback(traced.append)
    scope = ReportScope(now - timedelta(days=days), now, ZoneInfo(ZONE), RULES)
    plans: list[tuple[str, list[str]]] = []
    try:
        for name, report in REPORTS.items():
            traced.clear()
            await report(log.connection, scope)
            for statement in [s for s in traced if s.lstrip().upper().startswith("SELECT")]:
                async with log.connection.execute(f"EXPLAIN QUERY PLAN {statement}") as cursor:
                    steps = [row[3] for row in await cursor.fetchall()]
                plans.append((name, steps))
    finally:
        await log.close()
    return plans


# -- timing ------------------------------------------------------------------------


def cursor_at(database: Path, offset: int) -> str:
    with sqlite3.connect(database) as conn:
        started_at, call_id = conn.execute(
            "SELECT started_at, id FROM calls ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?",
            (offset,),
        ).fetchone()
    raw = json.dumps([started_at, call_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def targets(database: Path, calls: int, days: int) -> list[tuple[str, str, str]]:
    """(group, label, path)."""
    today = datetime.now(UTC).date()
    month = (today - timedelta(days=29)).isoformat()
    whole = (today - timedelta(days=days)).isoformat()
    deep = cursor_at(database, int(calls * 0.9))
    found: list[tuple[str, str, str]] = [
        ("list", "calls first page", "/api/v1/calls"),
        ("list", "calls deep cursor (90 %)", f"/api/v1/calls?cursor={deep}"),
        ("list", "calls manager=217", "/api/v1/calls?manager=217"),
        ("list", "calls status=missed", "/api/v1/calls?status=missed"),
        ("list", "calls type=unique", "/api/v1/calls?type=unique"),
        ("list", "calls type=callback", "/api/v1/calls?type=callback"),
        ("list", "calls type=spam", "/api/v1/calls?type=spam"),
        ("list", "calls category=3", "/api/v1/calls?category=3"),
        ("list", "calls number=", "/api/v1/calls?number=%2B380500000007"),
        ("list", "calls direction=internal", "/api/v1/calls?direction=internal"),
    ]
    for name in ("missed", "categories", "hourly", "summary", "coverage"):
        found.append(("report", f"{name} 7 days", f"/api/v1/reports/{name}"))
        found.append(("report", f"{name} 30 days", f"/api/v1/reports/{name}?from={month}"))
        found.append(("report", f"{name} {days} days", f"/api/v1/reports/{name}?from={whole}"))
    found.append(("report", "missed 7 days, manager", "/api/v1/reports/missed?manager=217"))
    found.append(("report", "missed 7 days csv", "/api/v1/reports/missed?format=csv"))
    found.append(("page", "dashboard /", "/"))
    return found


async def time_requests(
    base: str, paths: list[tuple[str, str, str]], requests: int, budget_s: float
) -> dict[str, tuple[float, float, float, int]]:
    results: dict[str, tuple[float, float, float, int]] = {}
    async with aiohttp.ClientSession(
        base_url=base,
        headers={"Authorization": f"Bearer {TOKEN}"},
        cookie_jar=aiohttp.CookieJar(unsafe=True),
    ) as http:
        # The dashboard wants its session cookie, as a browser gets it.
        async with http.post("/login", data={"token": TOKEN}, allow_redirects=False) as response:
            assert response.status == 303, response.status
        for _, label, path in paths:
            samples: list[float] = []
            # One warm-up request (page cache, statement cache).
            async with http.get(path, allow_redirects=False) as response:
                assert response.status == 200, (path, response.status, await response.text())
                await response.read()
            deadline = time.perf_counter() + budget_s
            while len(samples) < requests and (len(samples) < 5 or time.perf_counter() < deadline):
                began = time.perf_counter()
                async with http.get(path) as response:
                    await response.read()
                samples.append((time.perf_counter() - began) * 1000)
            samples.sort()
            p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
            results[label] = (statistics.median(samples), p99, samples[-1], len(samples))
    return results


async def measure(
    database: Path, paths: list[tuple[str, str, str]], requests: int, budget_s: float
) -> dict[str, tuple[float, float, float, int]]:
    app = VoicebotApp(settings_for(database))
    await app.start()
    try:
        return await time_requests(f"http://127.0.0.1:{app.http_port}", paths, requests, budget_s)
    finally:
        await app.stop()


async def first_start(database: Path) -> None:
    """Migrations and the category catalogue, as on a real first start."""
    app = VoicebotApp(settings_for(database))
    await app.start()
    await app.stop()
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE categories SET spam = 1 WHERE code = '9'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--requests", type=int, default=60, help="per endpoint")
    parser.add_argument(
        "--budget", type=float, default=6.0, help="seconds per endpoint at most (min 5 requests)"
    )
    parser.add_argument("--writes", type=int, default=4000, help="calls written through CallLog")
    parser.add_argument("--db", type=Path, help="seed here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the database file")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    workdir = Path(tempfile.mkdtemp(prefix="voicebot-bench-journal-"))
    database = args.db or workdir / "voicebot.db"
    try:
        asyncio.run(first_start(database))
        drop_for_seeding(database)
        print(f"seeding {args.calls:,} calls over {args.days} days into {database}")
        seconds = seed(database, args.calls, args.days)
        print(f"  {seconds:.1f} s ({args.calls / seconds:,.0f} calls/s, executemany, no triggers)")
        indexes_s, rollups_s = build_as_migrations(database)
        print(f"migration 4's indexes built in {indexes_s:.1f} s; migration 5 (rollups,"
              f" unprocessed flags, 2 indexes, triggers) in {rollups_s:.1f} s")  # fmt: skip
        paths = targets(database, args.calls, args.days)

        print("measuring over HTTP")
        timed = asyncio.run(measure(database, paths, args.requests, args.budget))
        print(f"\n{'':38} {'p50':>8} {'p99':>8} {'max':>8} {'n':>4}  target")
        for group, label, _ in paths:
            p50, p99, worst, n = timed[label]
            target = {"list": 50.0, "report": 500.0}.get(group)
            verdict = "" if target is None else ("ok" if p99 <= target else f"> {target:.0f} ms")
            print(f"{label:38} {p50:8.1f} {p99:8.1f} {worst:8.1f} {n:4d}  {verdict}")
        worst_list = max(timed[label][1] for g, label, _ in paths if g == "list")
        worst_report = max(timed[label][1] for g, label, _ in paths if g == "report")
        print(f"\nworst p99: list {worst_list:.1f} ms (target 50), any report"
              f" {worst_report:.1f} ms (target 500)")  # fmt: skip

        print(
            "\nin-process, one run each: rollups (served) against the direct SQL over the raw rows"
        )
        print(
            f"{'report':12} {'days':>5} {'rollups ms':>11} {'direct ms':>10} {'ratio':>7}  figures"
        )
        compared = asyncio.run(against_direct(database, args.days))
        for name, span, fast_ms, direct_ms, same, note in compared:
            verdict = "same" if same else f"DIFFER {note}"
            print(f"{name:12} {span:5d} {fast_ms:11.1f} {direct_ms:10.1f}"
                  f" {direct_ms / fast_ms:6.1f}x  {verdict}")  # fmt: skip
        print(f"every figure the same: {'yes' if all(c[4] for c in compared) else 'NO'}")

        plans = asyncio.run(report_plans(database, datetime.now(UTC), args.days))
        size = size_mb(database)
        share = rollup_mb(database)

        print(f"\nwrites through CallLog.record_call_event ({args.writes:,} new calls and a tenth"
              " of the missed ones re-sent answered, 8 alternating blocks):")  # fmt: skip
        cost = asyncio.run(write_cost(database, args.writes))
        (ins_on, upd_on), (ins_off, upd_off) = cost["migration 5"], cost["migration 4"]
        print(f"  inserts: {ins_on:,.0f} calls/s with migration 5's triggers, {ins_off:,.0f} on"
              f" migration 4's schema ({ins_on / ins_off:.2f}x)")  # fmt: skip
        print(f"  updates: {upd_on:,.0f} calls/s with migration 5's triggers, {upd_off:,.0f} on"
              f" migration 4's schema ({upd_on / upd_off:.2f}x)")  # fmt: skip

        rollup_text = f", of which rollups and their indexes {share:.1f} MB" if share else ""
        print(
            f"\ndatabase: {size:.0f} MB{rollup_text}; {args.calls:,} calls, {os.cpu_count()} CPUs"
        )
        print(f"\nquery plans of the {args.days}-day reports:")
        for name, steps in plans:
            print(f"  {name}: " + " | ".join(steps))
    finally:
        if not args.keep and args.db is None:
            for path in workdir.iterdir():
                path.unlink()
            workdir.rmdir()
        elif args.keep:
            print(f"kept {database}")


if __name__ == "__main__":
    main()
