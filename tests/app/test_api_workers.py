"""Heavy API reads in worker processes (issue 6 item 10), against the real
bot: aiohttp on loopback, the journal on disk, `python -m voicebot.api.worker`
processes started by the bot itself.

A worker is held mid-job by SIGSTOP (the job sits in its pipe, unanswered):
"in flight" and "saturated" are states here, not timings."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import psutil
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from tests.app.app_testkit import KYIV_JOURNAL, TOKEN, StartApp, api_session
from tests.app.known_calls import DAY, seed_known_calls
from tests.app.probe_jobs import DeleteEverything, NotImportable, OwnPriority
from tests.polling import until
from voicebot.api.reports import REPORTS
from voicebot.api.worker_pool import WorkerError
from voicebot.app import VoicebotApp
from voicebot.config_errors import describe_problems
from voicebot.journal.reader import READER_NICENESS
from voicebot.settings import Settings

EVENT = {
    "call_id": "missed-while-busy",
    "direction": "inbound",
    "caller": "+79990001122",
    "status": "missed",
    "started_at": "2026-11-20T10:00:00+00:00",
}
QUERIES = [DAY, "from=2000-01-01", f"{DAY}&manager=201", "from=2026-10-24&to=2026-10-26"]


@asynccontextmanager
async def running(
    start_app: StartApp, workers: int, **sections: Any
) -> AsyncIterator[tuple[VoicebotApp, aiohttp.ClientSession]]:
    app = await start_app(
        calls=2,
        http={"port": 0, "api_token": TOKEN, "api_workers": workers},
        journal=KYIV_JOURNAL,
        webhooks={"endpoints": []},
        **sections,
    )
    async with api_session(app) as http:
        yield app, http


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The worker frozen (SIGSTOP) until the block ends: a job sent to it waits."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


Answer = tuple[int, str | None, str | None, bytes]


async def fetch(http: aiohttp.ClientSession, path: str) -> Answer:
    async with http.get(path) as response:
        return (
            response.status,
            response.headers.get("Content-Type"),
            response.headers.get("Content-Disposition"),
            await response.read(),
        )


async def every_heavy_answer(http: aiohttp.ClientSession) -> dict[str, Answer]:
    paths = [
        f"/api/v1/reports/{name}?{query}{fmt}"
        for name in REPORTS
        for query in QUERIES
        for fmt in ("", "&format=csv")
    ]
    paths += [
        "/api/v1/calls?limit=500",
        "/api/v1/calls?limit=500&type=spam",
        f"/api/v1/calls?{DAY}&status=missed",
        "/api/v1/calls?cursor=not-ours",  # 400s stay the handler's own
        "/api/v1/reports/summary?from=2026-02-30",
    ]
    answers = {path: await fetch(http, path) for path in paths}
    # Paged by the cursor the list hands out.
    path = "/api/v1/calls?limit=3"
    while path:
        answers[path] = await fetch(http, path)
        cursor = (await (await http.get(path)).json())["next_cursor"]
        path = f"/api/v1/calls?limit=3&cursor={quote(cursor)}" if cursor else ""
    return answers


async def test_worker_answers_are_the_in_process_answers_byte_for_byte(
    start_app: StartApp, tmp_path: Path
) -> None:
    shared = {"storage": {"database": tmp_path / "shared.db"}}
    async with running(start_app, workers=0, **shared) as (app, http):
        await seed_known_calls(app, http)
        here = await every_heavy_answer(http)
        assert app.api_workers is None
    # A second bot on the same journal file, computing in worker processes.
    async with running(start_app, workers=2, **shared) as (app, http):
        offloaded = await every_heavy_answer(http)
        assert app.api_workers is not None and app.api_workers.started >= 1
    assert offloaded == here
    statuses = [status for status, *_ in here.values()]
    assert statuses.count(400) == 2 and set(statuses) == {200, 400}
    assert len(here) > 50
    missed = here[f"/api/v1/reports/missed?{DAY}"][3]
    assert b'"missed":4' in missed  # the seeded day, not an empty report


async def test_a_worker_killed_mid_request_is_one_503_then_replaced(start_app: StartApp) -> None:
    async with running(start_app, workers=1) as (app, http):
        pool = app.api_workers
        assert pool is not None and pool.pids() == []  # lazy: nothing before the first
        assert (await fetch(http, "/api/v1/calls"))[0] == 200
        (first,) = pool.pids()
        with capture_logs() as logs, stopped(first):
            request = asyncio.create_task(fetch(http, f"/api/v1/reports/missed?{DAY}"))
            await until(lambda: pool.in_flight == 1)
            os.kill(first, signal.SIGKILL)
            status, content_type, _, body = await request
        assert status == 503, body
        assert content_type == "application/json; charset=utf-8"
        assert b"retry later" in body
        lost = [line for line in logs if line["event"] == "api_worker.lost"]
        assert len(lost) == 1 and lost[0]["log_level"] == "warning"
        assert "exc_info" not in lost[0] and "exit status -9" in lost[0]["error"]
        assert not psutil.pid_exists(first)  # reaped, not a zombie
        assert (await fetch(http, f"/api/v1/reports/missed?{DAY}"))[0] == 200
        (second,) = pool.pids()
        assert second != first and pool.lost == 1 and pool.started == 2


async def test_a_pbx_event_is_answered_while_the_heavy_lane_is_full(start_app: StartApp) -> None:
    async with running(start_app, workers=1) as (app, http):
        pool, heavy = app.api_workers, app.request_gate.heavy
        assert pool is not None and heavy.concurrency == 1
        assert (await fetch(http, "/api/v1/calls"))[0] == 200
        (worker,) = pool.pids()
        with stopped(worker):
            reports = [
                asyncio.create_task(fetch(http, f"/api/v1/reports/{name}?{DAY}"))
                for name in ("missed", "summary", "hourly")
            ]
            await until(lambda: heavy.running == 1 and heavy.waiting == 2)
            async with http.post("/api/v1/calls/events", json=EVENT) as posted:
                assert posted.status == 201, await posted.text()
            assert not any(report.done() for report in reports)
        assert [(await report)[0] for report in reports] == [200, 200, 200]
        page = await (await http.get("/api/v1/calls")).json()
        assert [c["pbx_call_id"] for c in page["calls"]] == ["missed-while-busy"]


async def test_stop_leaves_no_worker_process_behind(start_app: StartApp) -> None:
    me = psutil.Process()
    before = {child.pid for child in me.children(recursive=True)}
    async with running(start_app, workers=2) as (app, http):
        pool = app.api_workers
        assert pool is not None
        assert (await fetch(http, "/api/v1/calls"))[0] == 200
        (first,) = pool.pids()
        with stopped(first):
            # The first worker holds this one; the next starts a second worker.
            held = asyncio.create_task(fetch(http, f"/api/v1/reports/missed?{DAY}"))
            await until(lambda: pool.in_flight == 1)
            assert (await fetch(http, f"/api/v1/reports/hourly?{DAY}"))[0] == 200
        assert (await held)[0] == 200
        workers = pool.pids()
        assert len(workers) == 2
        assert set(workers) <= {child.pid for child in me.children(recursive=True)} - before
        # The bot stops with a request in flight on a worker that never
        # answers: the request gets its 503 after the grace, the worker is killed.
        with stopped(first):
            late = asyncio.create_task(fetch(http, f"/api/v1/reports/missed?{DAY}"))
            await until(lambda: pool.in_flight == 1)
            await app.stop()
        assert (await late)[0] == 503
    assert {child.pid for child in me.children(recursive=True)} - before == set()
    assert not any(psutil.pid_exists(pid) for pid in workers)


# -- what a worker may do ------------------------------------------------------


async def test_a_worker_never_writes_and_runs_nicer_than_the_bot(start_app: StartApp) -> None:
    async with running(start_app, workers=1) as (app, http):
        async with http.post("/api/v1/calls/events", json=EVENT) as posted:
            assert posted.status == 201
        pool = app.api_workers
        assert pool is not None
        with capture_logs():
            with pytest.raises(WorkerError, match="readonly"):
                await pool.run(DeleteEverything())
            with pytest.raises(WorkerError, match="No module named"):
                await pool.run(NotImportable())
        # The worker goes on after a failed job, and the row is still there.
        page = await (await http.get("/api/v1/calls")).json()
        assert [c["pbx_call_id"] for c in page["calls"]] == ["missed-while-busy"]
        assert pool.started == 1
        nice, threads, *policies = map(int, (await pool.run(OwnPriority())).data.split())
        assert nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + READER_NICENESS)
        # Every thread, the one its SQLite connection runs in too, runs only when idle.
        assert threads >= 2 and policies == [os.SCHED_IDLE]


def test_api_workers_out_of_range_is_a_config_error_naming_it() -> None:
    for bad in (-1, 17):
        with pytest.raises(ValidationError) as refused:
            Settings(http={"api_workers": bad})
        (line,) = describe_problems(refused.value)
        assert line.startswith("http.api_workers (VOICEBOT_HTTP__API_WORKERS): expected 0"), line
    assert Settings().http.api_workers == 2
    assert Settings(http={"api_workers": 0}).http.api_workers == 0
