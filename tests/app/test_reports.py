"""Reports over the known calls of tests/app/known_calls.py (the DST day in
Kyiv, 2026-10-25), every figure hand-computed from the table there."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.app.app_testkit import StartApp, api_session, get_json
from tests.app.known_calls import DAY, A, B, C, D, E, F, at, start_with_known_calls
from tests.clock import ManualClock
from voicebot.app import VoicebotApp


@pytest.fixture
async def loaded(start_app: StartApp) -> AsyncIterator[tuple[VoicebotApp, aiohttp.ClientSession]]:
    app = await start_with_known_calls(start_app)
    async with api_session(app) as http:
        yield app, http


async def get_csv(http: aiohttp.ClientSession, path: str) -> list[list[str]]:
    async with http.get(path) as response:
        assert response.status == 200
        assert response.content_type == "text/csv"
        raw = await response.read()
    assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM, for Excel
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


async def test_call_types_at_the_window_edges(loaded: tuple[VoicebotApp, Any]) -> None:
    _, http = loaded
    page = await get_json(http, f"/api/v1/calls?{DAY}&limit=100")
    types = {c["pbx_call_id"]: c["types"] for c in page["calls"]}
    assert types == {
        "c2": ["repeated", "missed"],  # A called 3.5 h before (c1, the evening before)
        "d2": ["unique", "target", "unique-target"],  # exactly 7 days after d1
        "e2": ["repeated", "spam"],  # 7 days minus a second after e1; 59 s is short
        "c3": ["unique", "missed"],
        "c4": ["repeated", "target"],  # 60 s of talk is exactly the target
        "c5": [],  # outbound, 30 s
        "c6": ["unique", "missed"],  # the earlier call with C was ours (outbound)
        "c9": ["unique", "target", "unique-target"],
        "c7": ["missed"],  # anonymous: neither unique nor repeated
    }
    unique = await get_json(http, f"/api/v1/calls?{DAY}&type=unique")
    assert [c["pbx_call_id"] for c in unique["calls"]] == ["c9", "c6", "c3", "d2"]


async def test_missed_and_unprocessed(loaded: tuple[VoicebotApp, Any]) -> None:
    _, http = loaded
    report = await get_json(http, f"/api/v1/reports/missed?{DAY}")
    assert report["period"] == {
        "from": "2026-10-24T21:00:00Z",
        "to": "2026-10-25T22:00:00Z",  # 25 hours: the clocks went back
        "timezone": "Europe/Kyiv",
    }
    assert (report["missed"], report["unprocessed"], report["truncated"]) == (4, 2, False)
    assert [(c["pbx_call_id"], c["unprocessed"]) for c in report["calls"]] == [
        ("c7", True),  # anonymous: nobody can call back
        ("c6", True),  # C was called before the busy call, never after
        ("c3", False),  # B got through on Monday (c8)
        ("c2", False),  # A got through at 08:00 (c4)
    ]
    theirs = await get_json(http, f"/api/v1/reports/missed?{DAY}&manager=202")
    assert (theirs["missed"], theirs["unprocessed"]) == (2, 1)

    rows = await get_csv(http, f"/api/v1/reports/missed?{DAY}&format=csv")
    assert rows[0] == [
        "id", "started_at", "client_number", "company_number", "manager", "status", "wait_s",
        "unprocessed",
    ]  # fmt: skip
    by_time = [(r[1], r[2], r[5], r[6], r[7]) for r in rows[1:]]
    assert by_time == [
        ("2026-10-25 23:59:59", "", "missed", "15.0", "yes"),
        ("2026-10-25 10:00:00", C, "busy", "0.0", "yes"),
        ("2026-10-25 03:30:00", B, "missed", "30.0", "no"),  # 03:30 EET, the second one
        ("2026-10-25 03:30:00", A, "missed", "20.0", "no"),  # 03:30 EEST
    ]


async def test_categories_by_count_and_value(loaded: tuple[VoicebotApp, Any]) -> None:
    _, http = loaded
    report = await get_json(http, f"/api/v1/reports/categories?{DAY}")
    assert report["totals"] == [
        {"code": "1", "name": "Продаж", "manager": None, "calls": 1, "value_sum": 1500.5},
        {"code": "2", "name": "asked for the address", "manager": None, "calls": 2,
         "value_sum": 200.0},
        {"code": "9", "name": "spam", "manager": None, "calls": 1, "value_sum": 0.0},
    ]  # fmt: skip
    assert [
        (r["code"], r["manager"], r["calls"], r["value_sum"]) for r in report["by_manager"]
    ] == [
        ("1", "201", 1, 1500.5),
        ("2", "201", 1, 100.0),
        ("2", "202", 1, 100.0),
        ("9", "201", 1, 0.0),
    ]
    rows = await get_csv(http, f"/api/v1/reports/categories?{DAY}&format=csv")
    assert rows[0] == ["code", "name", "manager", "calls", "value_sum"]
    assert ["1", "Продаж", "(all)", "1", "1500.5"] in rows
    assert len(rows) == 1 + 4 + 3


async def test_hour_by_weekday_in_local_time(loaded: tuple[VoicebotApp, Any]) -> None:
    _, http = loaded
    report = await get_json(http, f"/api/v1/reports/hourly?{DAY}")
    sunday = report["calls"][6]
    assert report["weekdays"][6] == "Sun"
    # 03:30 twice: c2, d2, e2 at 03:30 EEST and c3 at 03:30 EET.
    expected = {3: 4, 8: 1, 9: 1, 10: 1, 14: 1, 23: 1}
    assert {h: n for h, n in enumerate(sunday) if n} == expected
    assert sum(map(sum, report["calls"])) == 9
    assert {h: n for h, n in enumerate(report["missed"][6]) if n} == {3: 2, 10: 1, 23: 1}
    rows = await get_csv(http, f"/api/v1/reports/hourly?{DAY}&format=csv")
    assert rows[0][:3] == ["weekday", "00", "01"] and rows[7][0] == "Sun"
    assert rows[7][1 + 3] == "4"


async def test_summary_inbound_and_outbound_apart(loaded: tuple[VoicebotApp, Any]) -> None:
    _, http = loaded
    report = await get_json(http, f"/api/v1/reports/summary?{DAY}")
    assert report["directions"] == [
        # answered c4 d2 e2 c9: waits 10 2 2 4, talks 60 61 59 200
        {"direction": "inbound", "calls": 8, "answered": 4, "missed": 4,
         "answered_ratio": 0.5, "avg_wait_s": 4.5, "avg_talk_s": 95.0},
        {"direction": "outbound", "calls": 1, "answered": 1, "missed": 0,
         "answered_ratio": 1.0, "avg_wait_s": 8.0, "avg_talk_s": 30.0},
    ]  # fmt: skip
    rows = await get_csv(http, f"/api/v1/reports/summary?{DAY}&format=csv")
    assert rows[1] == ["inbound", "8", "4", "4", "0.5", "4.5", "95.0"]


async def test_categorization_coverage_per_manager(loaded: tuple[VoicebotApp, Any]) -> None:
    _, http = loaded
    report = await get_json(http, f"/api/v1/reports/coverage?{DAY}")
    assert report["managers"] == [
        {"manager": "201", "answered": 3, "categorized": 3, "coverage": 1.0},
        {"manager": "202", "answered": 2, "categorized": 1, "coverage": 0.5},  # c9 not
    ]
    week = await get_json(http, "/api/v1/reports/coverage?from=2026-10-18&to=2026-10-25")
    # c1, d1, e1 and (after midnight local) nothing else join 201's answered calls.
    assert week["managers"][0] == {
        "manager": "201",
        "answered": 6,
        "categorized": 3,
        "coverage": 0.5,
    }


async def test_report_refusals(loaded: tuple[VoicebotApp, Any]) -> None:
    _, http = loaded
    for bad, field in (("format=xml", "format"), ("from=2026-02-30", "from")):
        async with http.get(f"/api/v1/reports/summary?{bad}") as response:
            assert response.status == 400
            assert (await response.json())["field"] == field


async def test_metrics_count_todays_calls_by_status_and_type(start_app: StartApp) -> None:
    # "Today" is the DST day (17:00 in Kyiv): the nine calls c2..c9 and c7.
    app = await start_with_known_calls(start_app, clock=ManualClock(at("10-25T15:00:00")))
    async with api_session(app) as http, http.get("/metrics") as response:
        assert response.status == 200
        text = await response.text()
    figures = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("voicebot_journal_")
    }
    today = "voicebot_journal_calls_today"
    assert {k: v for k, v in figures.items() if k.startswith(today + "{")} == {
        f'{today}{{direction="inbound",status="answered"}}': 4,  # d2 e2 c4 c9
        f'{today}{{direction="inbound",status="busy"}}': 1,  # c6
        f'{today}{{direction="inbound",status="missed"}}': 3,  # c2 c3 c7
        f'{today}{{direction="outbound",status="answered"}}': 1,  # c5
    }
    types = "voicebot_journal_call_types_today"
    assert {k[len(types) :]: v for k, v in figures.items() if k.startswith(types)} == {
        '{type="unique"}': 4,  # d2 c3 c6 c9
        '{type="repeated"}': 3,  # c2 e2 c4
        '{type="target"}': 3,  # d2 c4 c9
        '{type="unique-target"}': 2,  # d2 c9
        '{type="callback"}': 0,
        '{type="missed"}': 4,  # c2 c3 c6 c7
        '{type="spam"}': 1,  # e2
    }
    recorded = "voicebot_journal_calls_recorded_total"
    # Since start, all 13 events (the four categorizations filed on them add none).
    assert {k[len(recorded) :]: v for k, v in figures.items() if k.startswith(recorded)} == {
        '{source="pbx",status="answered"}': 9,
        '{source="pbx",status="busy"}': 1,
        '{source="pbx",status="missed"}': 3,
    }


# Callback jobs, stored as the queue stores them (voicebot/callbacks/queue.py).
# Times are the first missed call; attempts are (seconds after it, outcome, manager).
#   job  client  first missed (UTC)  state       attempts                      in the day?
#   J1   A       10-25 00:30:00      completed   +600 no answer, +1800 by 201  yes
#   J2   B       10-25 01:30:00      failed      +300, +900, +1500 (no one)    yes
#   J3   C       10-25 08:00:00      not_needed  +120 by 202                   yes
#   J4   D       10-24 21:00:00      queued      -                             yes (00:00)
#   J5   E       10-25 12:00:00      skipped     -                             yes
#   J6   F       10-24 20:59:59      completed   +60 by 201                    no (before)
#   J7   F       10-25 22:00:00      completed   +60 by 201                    no (after)
JOBS: list[tuple[str, str, str, list[tuple[int, str, str | None]]]] = [
    (A, "10-25T00:30:00", "completed", [(600, "client_no_answer", None),
                                        (1800, "completed", "201")]),
    (B, "10-25T01:30:00", "failed", [(300, "no_manager", None), (900, "no_manager", None),
                                     (1500, "no_manager", None)]),
    (C, "10-25T08:00:00", "not_needed", [(120, "not_needed", "202")]),
    (D, "10-24T21:00:00", "queued", []),
    (E, "10-25T12:00:00", "skipped", []),
    (F, "10-24T20:59:59", "completed", [(60, "completed", "201")]),
    (F, "10-25T22:00:00", "completed", [(60, "completed", "201")]),
]  # fmt: skip


async def store_jobs(app: VoicebotApp) -> None:
    assert app.call_log is not None
    conn = app.call_log.connection
    async with app.call_log.write_lock:
        await conn.execute("BEGIN IMMEDIATE")
        for number, missed, state, attempts in JOBS:
            first = at(missed).timestamp()
            cursor = await conn.execute(
                "INSERT INTO callback_jobs (client_number, state, source, attempts,"
                " first_missed_at, missed_at, created_at, updated_at)"
                " VALUES (?, ?, 'pbx', ?, ?, ?, ?, ?)",
                (number, state, len(attempts), first, first, first, first),
            )
            for round_, (after, outcome, target) in enumerate(attempts, 1):
                await conn.execute(
                    "INSERT INTO callback_attempts (job_id, round, client_number, targets,"
                    " claimed_by, started_at, ended_at, outcome, target)"
                    " VALUES (?, ?, ?, '[\"201\", \"202\"]', 'test', ?, ?, ?, ?)",
                    (cursor.lastrowid, round_, number, first + after, first + after + 30,
                     outcome, target),
                )  # fmt: skip
        await conn.execute("COMMIT")


async def test_callback_results(loaded: tuple[VoicebotApp, Any]) -> None:
    app, http = loaded
    await store_jobs(app)
    report = await get_json(http, f"/api/v1/reports/callbacks?{DAY}")
    assert report["jobs"] == 5  # J1..J5; J6 and J7 fall outside the 25-hour day
    assert report["by_state"] == {
        "queued": 1, "dialling": 0, "completed": 1, "not_needed": 1, "failed": 1,
        "cancelled": 0, "skipped": 1,
    }  # fmt: skip
    # Recovered: J1 of the three that ended after being dialled (J1, J2, J3).
    assert report["share_recovered"] == 0.3333
    # First callbacks 600, 300 and 120 s after the miss.
    assert (report["avg_first_callback_s"], report["median_first_callback_s"]) == (340.0, 300.0)
    assert report["attempts_per_job"] == 2.0  # (2 + 3 + 1) / 3

    theirs = await get_json(http, f"/api/v1/reports/callbacks?{DAY}&manager=201")
    assert (theirs["jobs"], theirs["share_recovered"], theirs["attempts_per_job"]) == (1, 1.0, 2.0)

    rows = await get_csv(http, f"/api/v1/reports/callbacks?{DAY}&format=csv")
    assert rows[0] == [
        "jobs", "state_queued", "state_dialling", "state_completed", "state_not_needed",
        "state_failed", "state_cancelled", "state_skipped", "share_recovered",
        "avg_first_callback_s", "median_first_callback_s", "attempts_per_job",
    ]  # fmt: skip
    assert rows[1] == ["5", "1", "0", "1", "1", "1", "0", "1", "0.3333", "340.0", "300.0", "2.0"]
