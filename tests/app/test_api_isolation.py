"""The API's reads beside the calls (issue 6 item 10), against the real app
computing them in its own process (`http.api_workers = 0`; the worker
processes are tests/app/test_api_workers.py): a report in flight runs on the
call log's read-only connection, in a thread of its own at a lower CPU
priority, so it neither queues a PBX event's write nor holds the event loop
the media clock ticks on.

The report is held mid-statement by a SQLite progress handler on that
connection, which waits for the test's go: "in flight" is a state here, not
a timing."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import threading
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from tests.app.app_testkit import StartApp
from tests.polling import until
from voicebot.api.calls import CallPage
from voicebot.api.reports import MissedReportOut, missed_csv
from voicebot.app import VoicebotApp
from voicebot.journal.reader import READER_NICENESS
from voicebot.slices import json_in_slices

EVENT = {
    "call_id": "pbx-during-report",
    "direction": "inbound",
    "caller": "+79990001122",
    "status": "missed",
    "started_at": "2026-11-20T10:00:00+00:00",
}


@pytest.fixture
async def app(start_app: StartApp) -> VoicebotApp:
    return await start_app(calls=2, http={"port": 0, "api_workers": 0}, webhooks={"endpoints": []})


class TickCounter:
    """A call's place on the media clock: counts the ticks it is given."""

    def __init__(self) -> None:
        self.ticks = 0

    def on_tick(self, tick_no: int) -> None:
        self.ticks += 1


async def test_a_report_in_flight_neither_queues_a_write_nor_holds_the_media_clock(
    app: VoicebotApp,
) -> None:
    assert app.call_log is not None
    reader = app.call_log.reader
    assert reader is not app.call_log.connection
    entered, release = threading.Event(), threading.Event()
    reader_thread: list[int] = []

    def hold() -> int:
        # SQLite calls this inside the report's statement, on the reader's thread.
        if not entered.is_set():
            reader_thread.append(threading.get_native_id())
            entered.set()
        release.wait(30)  # a safety net, never a measure: the test sets it
        return 0

    await reader.set_progress_handler(hold, 1)
    counter = TickCounter()
    app.media_clock.subscribe(counter)
    base = f"http://127.0.0.1:{app.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            report = asyncio.create_task(
                http.get(f"{base}/api/v1/reports/coverage?from=2000-01-01")
            )
            await until(entered.is_set, timeout=10)
            # The report is mid-statement. A PBX event is written meanwhile:
            # on one shared connection it would wait for the report's end.
            async with http.post(f"{base}/api/v1/calls/events", json=EVENT) as posted:
                assert posted.status == 201, await posted.text()
            # And the loop goes on ticking every call's media.
            ticks = counter.ticks
            await until(lambda: counter.ticks >= ticks + 10, timeout=10)
            assert not report.done()
            if sys.platform == "linux":
                loop_priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
                assert os.getpriority(os.PRIO_PROCESS, reader_thread[0]) == min(
                    19, loop_priority + READER_NICENESS
                )
            release.set()
            async with await report as answered:
                assert answered.status == 200
                assert (await answered.json())["managers"] == []
            # The event is in the journal, and the API reads it back.
            async with http.get(f"{base}/api/v1/calls?limit=5") as listed:
                calls = (await listed.json())["calls"]
            assert [c["pbx_call_id"] for c in calls] == ["pbx-during-report"]
    finally:
        release.set()
        app.media_clock.unsubscribe(counter)


async def test_the_api_read_connection_refuses_writes(app: VoicebotApp) -> None:
    assert app.call_log is not None
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await app.call_log.reader.execute("DELETE FROM calls")


async def test_pages_sliced_for_the_loop_are_the_bytes_pydantic_and_csv_write_in_one_go(
    app: VoicebotApp,
) -> None:
    """The calls page and the missed report go out in slices (JSON and CSV),
    with yields to the loop between; what goes out is unchanged."""
    base = f"http://127.0.0.1:{app.http_port}"
    async with aiohttp.ClientSession() as http:
        for n in range(5):
            event = EVENT | {"call_id": f"pbx-{n}", "started_at": f"2026-11-20T10:0{n}:00+00:00"}
            async with http.post(f"{base}/api/v1/calls/events", json=event) as posted:
                assert posted.status == 201
        async with http.get(f"{base}/api/v1/calls?limit=500") as listed:
            page_text = await listed.text()
        async with http.get(f"{base}/api/v1/reports/missed?from=2026-11-01") as missed:
            missed_text = await missed.text()
        async with http.get(f"{base}/api/v1/reports/missed?from=2026-11-01&format=csv") as csv:
            missed_csv_bytes = await csv.read()
    page = CallPage.model_validate_json(page_text)
    # `from` is PeriodOut's serialization alias only; read it back by its name.
    report = MissedReportOut.model_validate_json(missed_text.replace('"from":', '"from_":', 1))
    assert len(page.calls) == 5 and len(report.calls) == 5
    for model, text in ((page, page_text), (report, missed_text)):
        assert text == model.model_dump_json(by_alias=True)
        assert await json_in_slices(model, "calls", size=2) == text
    zone = ZoneInfo(app.settings.journal.timezone)
    one_go = missed_csv(report, zone).text().encode("utf-8")
    assert missed_csv_bytes == one_go
    assert await missed_csv(report, zone).encoded_in_slices(size=2) == one_go
