"""The reports' fast path (rollups for whole UTC days and quarter hours, raw
calls at the period's edges, the maintained unprocessed flag) against a
direct computation over the raw rows, on a seeded journal.

The journal is filled through the real intake path (`CallLog.record_call_event`,
menu categorizations through `Journal` and `record_categorization`), out of
time order, over 2026-10-19..11-04: Kyiv goes back an hour on 10-25, St John's
and New York on 11-01. Then calls change after they were stored: missed calls
later answered (re-sent by the PBX), answered calls re-sent as missed, calls
moved to another manager or another day, categories keyed later and keyed
again, menu calls the PBX never sent. Every report is compared over periods
made of local days, arbitrary instants and open ends, in zones 30 and 45
minutes off UTC, with and without a manager.

Waits, talks and values are multiples of 1/4 (exact in binary), so both
sides add them exactly and a figure either matches or is wrong.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiosqlite
import pytest

from ivr import Category
from voicebot.api.period import resolve
from voicebot.journal import CallOutcome, CallStart, Journal, migrations, reports, rollups
from voicebot.journal.call_events import CallEvent
from voicebot.journal.call_types import TypeRules
from voicebot.journal.calls import CallLog
from voicebot.journal.categories import CategoryCatalogue
from voicebot.journal.database import apply_migrations
from voicebot.journal.reports import WEEKDAYS, ReportScope

RULES = TypeRules.from_settings(unique_window_days=7, target_min_talk_s=60)
START = datetime(2026, 10, 19, 0, 0, tzinfo=UTC)
SPAN_S = 16 * 86400
CLIENTS = [f"+38050{n:07d}" for n in range(24)]
MANAGERS = ["201", "202", "203"]
COMPANY = "+380440000000"
ZONES = ("Europe/Kyiv", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns", "UTC")
CATALOGUE = {"1": "sale", "2": "asked for the address", "9": "spam"}


def _quarter_s(rng: random.Random, most: float) -> float:
    return round(rng.uniform(0, most) * 4) / 4


def _event(rng: random.Random, call_id: str, started: datetime) -> CallEvent:
    direction = rng.choice(["inbound"] * 6 + ["outbound"] * 3 + ["internal"])
    status = rng.choice(["answered"] * 6 + ["missed"] * 2 + ["busy", "failed"])
    client = rng.choice(CLIENTS) if rng.random() > 0.05 else None
    manager = rng.choice([*MANAGERS, None])
    wait = timedelta(seconds=_quarter_s(rng, 40))
    talk = timedelta(seconds=_quarter_s(rng, 200))
    answered_at = ended_at = None
    if status == "answered":
        if rng.random() > 0.05:  # a PBX that sent no answer time: no wait, no talk
            answered_at = started + wait
            ended_at = answered_at + talk
    else:
        ended_at = started + wait
    inbound = direction == "inbound"
    number = client or "anonymous"
    return CallEvent(
        call_id=call_id,
        direction=direction,
        caller=number if inbound else (COMPANY if direction == "outbound" else "101"),
        callee=COMPANY if inbound else (number if direction == "outbound" else "102"),
        status=status,
        started_at=started,
        answered_at=answered_at,
        ended_at=ended_at,
        manager=manager,
        callback=direction == "outbound" and rng.random() < 0.1,
    )


def _moments(rng: random.Random, count: int) -> list[datetime]:
    """Random instants (to the quarter second), and instants on the edges the
    reports split at: UTC and local midnights, quarter hours, DST changes."""
    found = [START + timedelta(seconds=_quarter_s(rng, SPAN_S)) for _ in range(count)]
    edges = [
        "2026-10-21T00:00:00+00:00",  # a UTC midnight
        "2026-10-20T23:59:59.75+00:00",
        "2026-10-22T21:00:00+00:00",  # Kyiv midnight (EEST)
        "2026-10-24T21:00:00+00:00",  # Kyiv midnight before the 25-hour day
        "2026-10-25T00:59:59+00:00",  # 03:59:59 EEST
        "2026-10-25T01:00:00+00:00",  # 03:00 EET, the second time round
        "2026-10-25T22:00:00+00:00",  # Kyiv midnight (EET)
        "2026-10-23T18:30:00+00:00",  # Kolkata midnight
        "2026-10-26T18:15:00+00:00",  # Kathmandu midnight
        "2026-11-01T03:30:00+00:00",  # St John's midnight (NDT)
        "2026-11-01T04:30:00+00:00",  # St John's falls back
        "2026-11-02T03:30:00+00:00",  # St John's midnight (NST)
        "2026-10-28T13:15:00+00:00",  # a quarter hour
        "2026-10-28T13:14:59.5+00:00",
    ]
    return found + [datetime.fromisoformat(e) for e in edges for _ in range(2)]


async def _categorize(
    journal: Journal, log: CallLog, key: str, pbx_id: str | None, manager: str | None,
    code: str, value: Decimal | None, at: datetime,
) -> None:  # fmt: skip
    start = CallStart(key, f"sip-{key}", pbx_id, manager, None, "PCMA", at)
    await journal.start_call(start)
    name = CATALOGUE[code] if code != "7" else None
    outcome = CallOutcome("confirmed", code, name, value, "", 1, "confirmed", at)
    await journal.finish_call(start, outcome)
    await log.record_categorization(key)


async def _seed(path: Path) -> None:
    rng = random.Random(20261025)
    journal = await Journal.open(path)
    log = await CallLog.open(path, RULES)
    catalogue = CategoryCatalogue(log.connection, log.write_lock)
    await catalogue.seed([Category(code, name) for code, name in CATALOGUE.items()])
    events = [_event(rng, f"pbx-{i}", at) for i, at in enumerate(_moments(rng, 420))]
    rng.shuffle(events)  # out of time order, as CDR imports and late events come
    for event in events:
        await log.record_call_event(event)

    def changed(event: CallEvent, **changes: Any) -> CallEvent:
        return event.model_copy(update=changes)

    # Missed calls later answered, and answered calls re-sent as missed.
    for event in rng.sample([e for e in events if e.status != "answered"], 25):
        answered = event.started_at + timedelta(seconds=_quarter_s(rng, 30))
        ended = answered + timedelta(seconds=_quarter_s(rng, 100))
        await log.record_call_event(
            changed(event, status="answered", answered_at=answered, ended_at=ended)
        )
    for event in rng.sample([e for e in events if e.status == "answered" and e.ended_at], 10):
        await log.record_call_event(changed(event, status="missed", answered_at=None))
    # Another manager; another day (and quarter, and maybe another DST side).
    for event in rng.sample(events, 15):
        await log.record_call_event(changed(event, manager=rng.choice([*MANAGERS, None])))
    for event in rng.sample(events, 15):
        shift = timedelta(hours=rng.choice([-30, -7, 5, 26]))
        moved = {"started_at": event.started_at + shift}
        for name in ("answered_at", "ended_at"):
            if getattr(event, name) is not None:
                moved[name] = getattr(event, name) + shift
        await log.record_call_event(changed(event, **moved))
    # Inbound calls re-sent as outbound and the other way round.
    for event in rng.sample([e for e in events if e.direction != "internal"], 12):
        flipped = "outbound" if event.direction == "inbound" else "inbound"
        await log.record_call_event(
            changed(event, direction=flipped, caller=event.callee, callee=event.caller)
        )
    # Categories keyed after the call was stored, some keyed again; a code
    # the catalogue does not know (no name); menu calls the PBX never sent.
    keyed = rng.sample([e for e in events if e.status == "answered"], 90)
    for n, event in enumerate(keyed):
        code = rng.choice(["1", "2", "9", "7"])
        value = rng.choice([None, Decimal("100"), Decimal("250.5"), Decimal("1500.25")])
        at = (event.ended_at or event.started_at) + timedelta(seconds=20)
        await _categorize(journal, log, f"menu-{n}", event.call_id, event.manager, code, value, at)
    for n, event in enumerate(keyed[:20]):
        at = (event.ended_at or event.started_at) + timedelta(seconds=40)
        value = Decimal(rng.choice([0, 50]))
        await _categorize(journal, log, f"rekey-{n}", event.call_id, event.manager, "2", value, at)
    for n in range(12):
        at = START + timedelta(seconds=_quarter_s(rng, SPAN_S))
        manager = rng.choice(MANAGERS)
        await _categorize(journal, log, f"alone-{n}", None, manager, "1", Decimal(10), at)
    await journal.close()
    await log.close()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded journal's file (built once for the module: a few seconds)."""
    path = tmp_path_factory.mktemp("rollups") / "journal.db"
    asyncio.run(_seed(path))
    return path


@pytest.fixture
async def log(seeded: Path) -> AsyncIterator[CallLog]:
    opened = await CallLog.open(seeded, RULES)
    try:
        yield opened
    finally:
        await opened.close()


def test_every_gap_is_the_one_a_recount_gives(seeded: Path) -> None:
    """The unique/repeated gaps, kept call by call through inserts out of
    order, moves, re-sent directions and numbers, against a recount."""
    with sqlite3.connect(seeded) as conn:
        found = conn.execute(
            "SELECT id, client_number, direction, started_at, prev_inbound_gap_s FROM calls"
        ).fetchall()
    expected: dict[int, float | None] = {row[0]: None for row in found}
    history: dict[str, list[tuple[float, int]]] = {}
    for call_id, number, direction, started, _ in found:
        if number is not None and direction == "inbound":
            history.setdefault(number, []).append((started, call_id))
    for calls in history.values():
        calls.sort()
        for (before, _), (started, call_id) in itertools.pairwise(calls):
            expected[call_id] = started - before
    assert {row[0]: row[4] for row in found} == expected
    assert sum(gap is not None for gap in expected.values()) > 200


# -- the direct computation over the raw rows ------------------------------------------


@dataclass(frozen=True)
class Row:
    id: int
    direction: str | None
    client: str | None
    manager: str | None
    status: str
    started: float
    wait: float | None
    talk: float | None
    code: str | None
    name: str | None
    value: str | None

    @property
    def missed(self) -> bool:
        return self.direction == "inbound" and self.status != "answered"


def raw_rows(path: Path) -> list[Row]:
    with sqlite3.connect(path) as conn:
        found = conn.execute(
            "SELECT id, direction, client_number, manager, status, started_at, wait_s, talk_s,"
            " category_code, category_name, value FROM calls"
        ).fetchall()
    return [Row(*row) for row in found]


def in_scope(rows: list[Row], scope: ReportScope) -> list[Row]:
    since = scope.since.timestamp() if scope.since else float("-inf")
    until = scope.until.timestamp() if scope.until else float("inf")
    return [
        r
        for r in rows
        if since <= r.started < until and (scope.manager is None or r.manager == scope.manager)
    ]


def unprocessed_ids(rows: list[Row]) -> set[int]:
    """Missed calls with no answered call with their client after them."""
    return {
        call.id
        for call in rows
        if call.missed
        and (
            call.client is None
            or not any(
                a.client == call.client and a.status == "answered" and a.started > call.started
                for a in rows
            )
        )
    }


def direct_missed(
    rows: list[Row], scope: ReportScope, unprocessed: set[int]
) -> tuple[int, int, list[tuple[int, bool]]]:
    missed = sorted(
        (r for r in in_scope(rows, scope) if r.missed),
        key=lambda r: (r.started, r.id),
        reverse=True,
    )
    flags = [(r.id, r.id in unprocessed) for r in missed]
    return len(missed), sum(flag for _, flag in flags), flags


def direct_categories(rows: list[Row], scope: ReportScope) -> list[tuple[Any, ...]]:
    groups: dict[tuple[str, str | None], list[Row]] = {}
    for r in in_scope(rows, scope):
        if r.code is not None:
            groups.setdefault((r.code, r.manager), []).append(r)
    result = []
    for (code, manager), calls in groups.items():
        names = [r.name for r in calls if r.name is not None]
        name = CATALOGUE.get(code) or (max(names) if names else code)
        value = sum(float(r.value) for r in calls if r.value is not None)
        result.append((code, name, manager, len(calls), round(value, 4)))
    return sorted(result, key=lambda g: (len(g[0]), g[0], g[2] is not None, g[2] or ""))


def direct_hourly(rows: list[Row], scope: ReportScope) -> tuple[list[list[int]], list[list[int]]]:
    calls = [[0] * 24 for _ in range(7)]
    missed = [[0] * 24 for _ in range(7)]
    for r in in_scope(rows, scope):
        local = datetime.fromtimestamp(r.started, scope.zone)  # the call's own local time
        calls[local.weekday()][local.hour] += 1
        missed[local.weekday()][local.hour] += r.missed
    return calls, missed


def direct_summary(rows: list[Row], scope: ReportScope) -> list[tuple[Any, ...]]:
    result = []
    for direction in ("inbound", "outbound"):
        mine = [r for r in in_scope(rows, scope) if r.direction == direction]
        answered = [r for r in mine if r.status == "answered"]
        waits = [r.wait for r in answered if r.wait is not None]
        talks = [r.talk for r in answered if r.talk is not None]
        result.append(
            (
                direction,
                len(mine),
                len(answered),
                len(mine) - len(answered),
                round(len(answered) / len(mine), 4) if mine else None,
                round(sum(waits) / len(waits), 2) if waits else None,
                round(sum(talks) / len(talks), 2) if talks else None,
            )
        )
    return result


def direct_coverage(rows: list[Row], scope: ReportScope) -> list[tuple[Any, ...]]:
    managers: dict[str, list[Row]] = {}
    for r in in_scope(rows, scope):
        if r.status == "answered" and r.manager is not None:
            managers.setdefault(r.manager, []).append(r)
    return [
        (m, len(calls), k := sum(r.code is not None for r in calls), round(k / len(calls), 4))
        for m, calls in sorted(managers.items())
    ]


# -- the comparison ---------------------------------------------------------------------------


def periods(zone: ZoneInfo) -> list[tuple[str, datetime | None, datetime | None]]:
    def local(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
        period = resolve(since, until, zone)
        return period.since, period.until

    def instant(text: str) -> datetime:
        return datetime.fromisoformat(text)

    return [
        ("the Kyiv DST day", *local("2026-10-25", "2026-10-25")),
        ("the St John's DST day", *local("2026-11-01", "2026-11-01")),
        ("a week over both changes", *local("2026-10-24", "2026-11-02")),
        ("every local day seeded", *local("2026-10-18", "2026-11-05")),
        ("arbitrary instants", instant("2026-10-20T07:07:13.5+00:00"),
         instant("2026-10-31T19:53:01+00:00")),
        ("inside one quarter hour", instant("2026-10-28T13:01:00+00:00"),
         instant("2026-10-28T13:14:59.75+00:00")),
        ("on UTC days exactly", instant("2026-10-21T00:00:00+00:00"),
         instant("2026-10-29T00:00:00+00:00")),
        ("open start", None, instant("2026-10-27T10:00:00+00:00")),
        ("open end", instant("2026-10-22T21:00:00+00:00"), None),
        ("everything", None, None),
    ]  # fmt: skip


def test_a_period_splits_into_whole_units_and_raw_edges() -> None:
    split = reports.split_period
    assert split(86400.0 * 3, 86400.0 * 5, 86400) == reports.Split((3, 5), ())
    assert split(86400.0 * 3 - 1, 86400.0 * 5 + 0.5, 86400) == reports.Split(
        (3, 5), ((86400.0 * 3 - 1, 86400.0 * 3), (86400.0 * 5, 86400.0 * 5 + 0.5))
    )
    assert split(10.0, 20.0, 900) == reports.Split(None, ((10.0, 20.0),))
    assert split(None, 1000.0, 900) == reports.Split((None, 1), ((900.0, 1000.0),))
    assert split(-1.0, None, 900) == reports.Split((0, None), ((-1.0, 0.0),))
    assert rollups.unit_of(-0.5, 900) == -1 and rollups.first_unit_from(-900.0, 900) == -1


async def test_every_report_equals_the_raw_rows(seeded: Path, log: CallLog) -> None:
    rows = raw_rows(seeded)
    open_misses = unprocessed_ids(rows)
    assert len(rows) > 450
    assert sum(r.code is not None for r in rows) > 60
    conn = log.connection
    compared = 0
    for zone_name in ZONES:
        zone = ZoneInfo(zone_name)
        for label, since, until in periods(zone):
            for manager in (None, "202", "nobody"):
                scope = ReportScope(since, until, zone, RULES, manager)
                where = f"{label} in {zone_name}, manager {manager}"

                report = await reports.missed(conn, scope, limit=10_000)
                count, unprocessed, flags = direct_missed(rows, scope, open_misses)
                assert (report.missed, report.unprocessed) == (count, unprocessed), where
                assert [(m.call.id, m.unprocessed) for m in report.calls] == flags, where

                found = await reports.categories(conn, scope)
                assert [
                    (r.code, r.name, r.manager, r.calls, r.value_sum) for r in found.by_manager
                ] == direct_categories(rows, scope), where

                hourly = await reports.hourly(conn, scope)
                assert (hourly.calls, hourly.missed) == direct_hourly(rows, scope), where

                summary = await reports.summary(conn, scope)
                assert [
                    (s.direction, s.calls, s.answered, s.missed, s.answered_ratio,
                     s.avg_wait_s, s.avg_talk_s)
                    for s in summary
                ] == direct_summary(rows, scope), where  # fmt: skip

                coverage = await reports.coverage(conn, scope)
                assert [
                    (c.manager, c.answered, c.categorized, c.coverage) for c in coverage
                ] == direct_coverage(rows, scope), where
                compared += 1
    assert compared == len(ZONES) * 10 * 3
    # The comparisons were not empty: over the whole journal, and in the week
    # over both DST changes.
    everything = ReportScope(None, None, ZoneInfo("UTC"), RULES)
    assert direct_missed(rows, everything, open_misses)[:2] >= (90, 10)
    week = ReportScope(*periods(ZoneInfo("Europe/Kyiv"))[2][1:], ZoneInfo("Europe/Kyiv"), RULES)
    assert len(direct_categories(rows, week)) >= 8 and len(direct_coverage(rows, week)) == 3
    assert sum(map(sum, direct_hourly(rows, week)[0])) > 200 and WEEKDAYS[6] == "Sun"


def _contents(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    found = {t: sorted(conn.execute(f"SELECT * FROM {t}"), key=repr) for t in rollups.TABLES}
    found["unprocessed"] = conn.execute("SELECT id, unprocessed FROM calls ORDER BY id").fetchall()
    return found


def test_the_triggers_keep_what_a_rebuild_computes(seeded: Path, tmp_path: Path) -> None:
    copy = tmp_path / "rebuilt.db"
    with sqlite3.connect(seeded) as conn:
        conn.execute(f"VACUUM INTO '{copy}'")
        kept = _contents(conn)
    with sqlite3.connect(copy) as conn:
        for table in rollups.TABLES:
            conn.execute(f"DELETE FROM {table}")
        conn.execute("UPDATE calls SET unprocessed = NULL")
        for statement in rollups.BUILD:
            conn.execute(statement)
        rebuilt = _contents(conn)
    assert rebuilt == kept
    assert len(kept["call_days"]) > 50 and len(kept["category_days"]) > 20


async def test_migration_5_builds_the_rollups_of_an_existing_journal(
    seeded: Path, tmp_path: Path
) -> None:
    """A journal of migration 4 with calls in it: opening it builds the
    rollups and flags, and the reports answer as over the raw rows."""
    old = tmp_path / "v4.db"
    v4 = await aiosqlite.connect(old, isolation_level=None)
    try:
        await apply_migrations(v4, "journal", migrations.MIGRATIONS[:4])
        await v4.execute(f"ATTACH DATABASE '{seeded}' AS seeded")
        columns = "id, source, pbx_call_id, direction, caller, callee, company_number," \
            " client_number, manager, status, started_at, answered_at, ended_at, wait_s," \
            " talk_s, prev_inbound_gap_s, is_callback, categorization_id, category_code," \
            " category_name, value, recorded_at, updated_at"  # fmt: skip
        await v4.execute(f"INSERT INTO calls ({columns}) SELECT {columns} FROM seeded.calls")
        await v4.execute("INSERT INTO categories SELECT * FROM seeded.categories")
    finally:
        await v4.close()
    log = await CallLog.open(old, RULES)  # migrates to 5
    try:
        with sqlite3.connect(old) as migrated, sqlite3.connect(seeded) as kept:
            assert _contents(migrated) == _contents(kept)
        zone = ZoneInfo("Asia/Kathmandu")
        scope = ReportScope(*periods(zone)[3][1:], zone, RULES)
        rows = raw_rows(old)
        summary = await reports.summary(log.connection, scope)
        assert [
            (s.direction, s.calls, s.answered, s.missed, s.answered_ratio, s.avg_wait_s,
             s.avg_talk_s) for s in summary
        ] == direct_summary(rows, scope)  # fmt: skip
        report = await reports.missed(log.connection, scope)
        expected = direct_missed(rows, scope, unprocessed_ids(rows))[:2]
        assert (report.missed, report.unprocessed) == expected
    finally:
        await log.close()
