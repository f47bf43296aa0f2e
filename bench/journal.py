"""Call journal at scale: list and report latency over HTTP at 1 000 000 calls.

    python bench/journal.py [--calls 1000000] [--days 365] [--requests 60]
                            [--db PATH] [--keep]

1. Seeds a fresh SQLite file (migrated by `open_database`, categories seeded
   by the app's first start) with `--calls` calls spread over `--days` days
   ending now: 60 % inbound, 30 % outbound, 10 % internal; 150 000 client
   numbers with a long tail (a few call often), 40 managers, a category on
   half the answered calls, 1 % callbacks. Rows go in with `executemany` in
   one transaction per 100 000; the unique/repeated gaps are then computed
   in one SQL statement (a window function), as the call log keeps them.
2. Starts the real app (`VoicebotApp`: aiohttp on 127.0.0.1, bearer token)
   on that file and times, sequentially, `--requests` requests of each:
   `GET /api/v1/calls` (first page, a deep cursor 90 % of the way down,
   filters), every report over 7 days (the default), 30 days and the whole
   span, and the dashboard. p50 / p99 / max in ms.
3. Does that twice in one run: *before* (the indexes of journal migration 4
   dropped) and *after* (recreated), and prints the ratio, with the query
   plans (EXPLAIN QUERY PLAN) of the report queries in both states.
4. Prints the database size.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ports import rtp_window
from voicebot.app import VoicebotApp
from voicebot.journal import (
    migrations,
    reports,
)
from voicebot.journal.call_types import TypeRules
from voicebot.journal.calls import CallLog
from voicebot.journal.reports import ReportScope
from voicebot.settings import Settings

TOKEN = "bench-token"
ZONE = "Europe/Kyiv"
RULES = TypeRules.from_settings(30, 30)
CHUNK = 100_000
CLIENTS = 150_000
MANAGERS = [str(200 + n) for n in range(40)]
CODES = [("1", "100"), ("2", "0"), ("3", "250.5"), ("9", "0")]

#: The indexes this benchmark justifies: journal migration 4's statements.
NEW_INDEXES: tuple[str, ...] = dict(migrations.MIGRATIONS)[4]
REPORTS = {
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


def index_names() -> list[str]:
    names = []
    for statement in NEW_INDEXES:
        words = statement.split()
        names.append(words[words.index("INDEX") + 1])
    return names


def drop_new_indexes(database: Path) -> None:
    with sqlite3.connect(database) as conn:
        for name in index_names():
            conn.execute(f"DROP INDEX IF EXISTS {name}")


def create_new_indexes(database: Path) -> float:
    began = time.perf_counter()
    with sqlite3.connect(database) as conn:
        for statement in NEW_INDEXES:
            conn.execute(statement.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))
    return time.perf_counter() - began


def size_mb(database: Path) -> float:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        path = Path(f"{database}{suffix}")
        if path.exists():
            total += path.stat().st_size
    return total / 1e6


# -- query plans -----------------------------------------------------------------


async def report_plans(database: Path, now: datetime) -> list[tuple[str, list[str]]]:
    """Each 7-day report's queries as they run (SQL traced), with their plans."""
    log = await CallLog.open(database, RULES)
    traced: list[str] = []
    await log.connection.set_trace_callback(traced.append)
    scope = ReportScope(now - timedelta(days=7), now, ZoneInfo(ZONE), RULES)
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
    parser.add_argument("--requests", type=int, default=60, help="per endpoint and state")
    parser.add_argument(
        "--budget", type=float, default=6.0, help="seconds per endpoint at most (min 5 requests)"
    )
    parser.add_argument("--db", type=Path, help="seed here (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the database file")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))

    workdir = Path(tempfile.mkdtemp(prefix="voicebot-bench-journal-"))
    database = args.db or workdir / "voicebot.db"
    try:
        asyncio.run(first_start(database))
        drop_new_indexes(database)  # measured without them first, and seeding is faster
        print(f"seeding {args.calls:,} calls over {args.days} days into {database}")
        seconds = seed(database, args.calls, args.days)
        print(f"  {seconds:.1f} s ({args.calls / seconds:,.0f} calls/s)")
        paths = targets(database, args.calls, args.days)

        before_plans = asyncio.run(report_plans(database, datetime.now(UTC)))
        print("\nmeasuring BEFORE (journal migration 4's indexes dropped)")
        before = asyncio.run(measure(database, paths, args.requests, args.budget))
        size_before = size_mb(database)
        built = create_new_indexes(database)
        after_plans = asyncio.run(report_plans(database, datetime.now(UTC)))
        print(f"indexes built in {built:.1f} s: {', '.join(index_names())}")
        print("measuring AFTER")
        after = asyncio.run(measure(database, paths, args.requests, args.budget))
        size_after = size_mb(database)

        print(f"\n{'':38} {'before p50':>10} {'p99':>8} {'max':>8}   {'after p50':>9} {'p99':>8}"
              f" {'max':>8} {'n':>4}  {'p99 ratio':>9}  target")  # fmt: skip
        for group, label, _ in paths:
            b50, b99, bmax, _ = before[label]
            a50, a99, amax, n = after[label]
            target = {"list": 50.0, "report": 500.0}.get(group)
            verdict = "" if target is None else ("ok" if a99 <= target else f"> {target:.0f} ms")
            print(
                f"{label:38} {b50:10.1f} {b99:8.1f} {bmax:8.1f}   {a50:9.1f} {a99:8.1f}"
                f" {amax:8.1f} {n:4d}  {b99 / a99:8.1f}x  {verdict}"
            )
        worst_list = max(after[label][1] for g, label, _ in paths if g == "list")
        worst_report = max(after[label][1] for g, label, _ in paths if g == "report")
        print(f"\nworst p99 after: list {worst_list:.1f} ms (target 50), any report"
              f" {worst_report:.1f} ms (target 500)")  # fmt: skip
        print(f"database: {size_after:.0f} MB ({size_before:.0f} MB without the new indexes),"
              f" {args.calls:,} calls, {os.cpu_count()} CPUs")  # fmt: skip
        print("\nquery plans of the 7-day reports, before -> after:")
        for (name, plan_b), (_, plan_a) in zip(before_plans, after_plans, strict=True):
            print(f"  {name}:")
            print("    before: " + " | ".join(plan_b))
            print("    after:  " + " | ".join(plan_a))
    finally:
        if not args.keep and args.db is None:
            for path in workdir.iterdir():
                path.unlink()
            workdir.rmdir()
        elif args.keep:
            print(f"kept {database}")


if __name__ == "__main__":
    main()
