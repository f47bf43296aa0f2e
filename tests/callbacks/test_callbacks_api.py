"""Callbacks through the running app: real aiohttp server, real SQLite file,
the scheduler with a scripted dialler (the SIP edge). PBX events queue and
cancel, the explicit request, the list and its cursor, refusals naming the
field, the OpenAPI document, /metrics."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.callbacks.callbacks_testkit import (
    TOKEN,
    ScriptedDialler,
    api_session,
    callbacks_section,
)
from tests.polling import until
from tests.ports import rtp_window
from tests.webhooks.webhooks_testkit import SECRET, Receiver
from voicebot.app import VoicebotApp
from voicebot.callbacks.attempt import AttemptResult, Outcome
from voicebot.settings import Settings

AppFactory = Callable[..., Any]


@pytest.fixture
async def start_app(tmp_path: Path) -> AsyncIterator[AppFactory]:
    async with contextlib.AsyncExitStack() as running:

        async def start(
            dialler: ScriptedDialler | None = None,
            webhooks: dict[str, Any] | None = None,
            **callbacks: Any,
        ) -> VoicebotApp:
            low, high = rtp_window(2)
            settings = Settings(
                sip={"bind_port": 0, "rtp_port_min": low, "rtp_port_max": high},
                storage={"database": tmp_path / "voicebot.db"},
                http={"port": 0, "api_token": TOKEN},
                callbacks=callbacks_section(
                    **{"first_delay_s": 3600, "min_ring_s": 5, **callbacks}
                ),
                webhooks=webhooks or {"endpoints": []},
            )
            app = VoicebotApp(settings, dialler=dialler or ScriptedDialler(hold=True))
            await app.start()
            running.push_async_callback(app.stop)
            return app

        yield start


def event(
    call_id: str, status: str, start: datetime, ring_s: float = 20, **more: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "call_id": call_id,
        "direction": "inbound",
        "caller": "044 123 45 67",
        "callee": "+380440000000",
        "status": status,
        "started_at": start.isoformat(),
    }
    if status == "answered":
        body["answered_at"] = (start + timedelta(seconds=ring_s)).isoformat()
        body["ended_at"] = (start + timedelta(seconds=ring_s + 60)).isoformat()
        body["manager"] = "201"
    else:
        body["ended_at"] = (start + timedelta(seconds=ring_s)).isoformat()
    body.update(more)
    return body


async def callbacks(http: aiohttp.ClientSession, query: str = "") -> list[dict[str, Any]]:
    async with http.get(f"/api/v1/callbacks{query}") as response:
        assert response.status == 200, await response.text()
        return list((await response.json())["callbacks"])


async def test_missed_event_queues_and_answered_event_cancels(start_app: AppFactory) -> None:
    app = await start_app()
    now = datetime.now(UTC)
    async with api_session(app) as http:
        async with http.post("/api/v1/calls/events", json=event("pbx-1", "missed", now)) as r:
            assert r.status == 201
            missed_call_id = (await r.json())["id"]
        short = event("pbx-2", "missed", now, ring_s=2, caller="0501112233")
        async with http.post("/api/v1/calls/events", json=short) as r:
            assert r.status == 201  # in the call log, but no callback for a 2 s ring
        [job] = await callbacks(http)
        assert job["client_number"] == "+380441234567" and job["state"] == "queued"
        assert [m["call_id"] for m in job["missed_calls"]] == [missed_call_id]
        # The same event again lists nothing twice.
        async with http.post("/api/v1/calls/events", json=event("pbx-1", "missed", now)) as r:
            assert r.status == 200
        answered = event("pbx-3", "answered", now + timedelta(minutes=2))
        async with http.post("/api/v1/calls/events", json=answered) as r:
            assert r.status == 201
        [job] = await callbacks(http)
        assert (job["state"], job["reason"]) == ("cancelled", "answered")
        assert len(job["missed_calls"]) == 1
        async with http.get("/api/v1/webhooks/deliveries") as r:
            assert r.status == 200


async def test_manager_calling_the_client_cancels(start_app: AppFactory) -> None:
    app = await start_app()
    now = datetime.now(UTC)
    async with api_session(app) as http:
        await http.post("/api/v1/calls/events", json=event("pbx-1", "missed", now))
        outbound = event(
            "pbx-9",
            "answered",
            now + timedelta(minutes=1),
            direction="outbound",
            caller="201",
            callee="+380441234567",
        )
        async with http.post("/api/v1/calls/events", json=outbound) as r:
            assert r.status == 201, await r.text()
        [job] = await callbacks(http)
        assert (job["state"], job["reason"]) == ("cancelled", "manager_called")


async def test_explicit_request_and_refusals(start_app: AppFactory) -> None:
    app = await start_app()
    later = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    async with api_session(app) as http:
        body = {"number": "+380441234567", "not_before": later.isoformat()}
        async with http.post("/api/v1/callbacks", json=body) as r:
            assert r.status == 201, await r.text()
            job = await r.json()
        assert job["source"] == "api" and job["due_at"] == later.isoformat().replace("+00:00", "Z")
        async with http.post("/api/v1/callbacks", json={"number": "0441234567"}) as r:
            assert r.status == 200 and (await r.json())["id"] == job["id"]
        for bad, field in (
            ({"number": "+380441234567", "not_before": "tomorrow"}, "not_before"),
            ({"number": "+380441234567", "not_before": "2026-11-30T10:00:00"}, "not_before"),
            ({"number": "DROP TABLE"}, "number"),
            ({}, "number"),
            ({"number": "+4930123456"}, "number"),  # not allowed: another country
        ):
            async with http.post("/api/v1/callbacks", json=bad) as r:
                assert r.status == 400, (bad, await r.text())
                assert (await r.json())["field"] == field
        async with http.get(f"/api/v1/callbacks/{job['id']}") as r:
            assert r.status == 200
        async with http.get("/api/v1/callbacks/999") as r:
            assert r.status == 404
        async with http.post(f"/api/v1/callbacks/{job['id']}/cancel") as r:
            assert r.status == 200 and (await r.json())["state"] == "cancelled"
        async with http.post(f"/api/v1/callbacks/{job['id']}/cancel") as r:
            assert r.status == 409
        async with http.get("/api/v1/callbacks?state=bogus") as r:
            assert r.status == 400 and (await r.json())["field"] == "state"
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as anonymous:
        async with anonymous.get("/api/v1/callbacks") as r:
            assert r.status == 401
        async with anonymous.post("/api/v1/callbacks", json={"number": "0441234567"}) as r:
            assert r.status == 401


async def test_disabled_callbacks_refuse_requests(tmp_path: Path) -> None:
    low, high = rtp_window(2)
    settings = Settings(
        sip={"bind_port": 0, "rtp_port_min": low, "rtp_port_max": high},
        storage={"database": tmp_path / "voicebot.db"},
        http={"port": 0},
    )
    app = VoicebotApp(settings)
    await app.start()
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as http:
            async with http.post("/api/v1/callbacks", json={"number": "+380441234567"}) as r:
                assert r.status == 409 and "callbacks.enabled" in (await r.json())["error"]
            now = datetime.now(UTC)
            await http.post("/api/v1/calls/events", json=event("pbx-1", "missed", now))
            assert await callbacks(http) == []
    finally:
        await app.stop()


async def test_due_job_reaches_the_dialler_and_completes(start_app: AppFactory) -> None:
    dialler = ScriptedDialler(AttemptResult(Outcome.COMPLETED, target="201", talk_s=42.0))
    app = await start_app(dialler, first_delay_s=0)
    async with api_session(app) as http:
        await http.post("/api/v1/calls/events", json=event("pbx-1", "missed", datetime.now(UTC)))

        async def completed() -> bool:
            jobs = await callbacks(http, "?state=completed")
            return len(jobs) == 1

        await until(completed)
        [job] = await callbacks(http)
        assert job["attempt_log"][0]["talk_s"] == 42.0
        async with http.get("/metrics") as r:
            text = await r.text()
        assert 'voicebot_callback_jobs{state="completed"} 1.0' in text
        assert 'voicebot_callback_attempts{outcome="completed"} 1.0' in text
        async with http.get("/api/v1/openapi.json") as r:
            document = await r.json()
        assert {"get", "post"} <= set(document["paths"]["/api/v1/callbacks"])
        assert "/api/v1/callbacks/{id}/retry" in document["paths"]
    assert dialler.requests[0].client_dial == "+380441234567"


async def test_list_pages_and_filters(start_app: AppFactory) -> None:
    app = await start_app()
    async with api_session(app) as http:
        for n in range(7):
            await http.post("/api/v1/callbacks", json={"number": f"04400000{n:02d}"})
        seen: list[int] = []
        url: str | None = "/api/v1/callbacks?limit=3&state=queued"
        while url is not None:
            async with http.get(url) as r:
                page = await r.json()
            seen += [job["id"] for job in page["callbacks"]]
            cursor = page["next_cursor"]
            url = f"/api/v1/callbacks?limit=3&state=queued&cursor={cursor}" if cursor else None
        assert len(seen) == 7 and seen == sorted(seen, reverse=True)
        [one] = await callbacks(http, "?number=%2B380440000003")
        assert one["client_number"] == "+380440000003"
        today = datetime.now(UTC).date()
        assert len(await callbacks(http, f"?from={today - timedelta(days=1)}")) == 7
        assert await callbacks(http, f"?to={today - timedelta(days=2)}") == []
        async with http.get("/api/v1/callbacks?cursor=garbage") as r:
            assert r.status == 400 and (await r.json())["field"] == "cursor"


async def test_callback_webhooks_arrive_signed(start_app: AppFactory, receiver: Receiver) -> None:
    """call.missed, callback.scheduled (new, then rescheduled after a busy
    client) and callback.completed reach a real receiver through the outbox,
    each verified with the public `standardwebhooks` library."""
    dialler = ScriptedDialler(
        AttemptResult(Outcome.CLIENT_BUSY, target="201", sip_status=486),
        AttemptResult(Outcome.COMPLETED, target="201"),
    )
    app = await start_app(
        dialler,
        webhooks={"endpoints": [{"url": receiver.url, "secret": SECRET}]},
        first_delay_s=0,
        retry_interval_s=0.2,
    )
    async with (
        api_session(app) as http,
        http.post("/api/v1/calls/events", json=event("pbx-7", "missed", datetime.now(UTC))) as r,
    ):
        call_id = (await r.json())["id"]
    await until(lambda: len(receiver.received) >= 4, timeout=10, what="four webhooks")
    events = [json.loads(item.body) for item in receiver.received]
    assert all(item.verified for item in receiver.received)
    # The dispatcher posts up to 4 at once: arrival order is not promised.
    assert sorted(e["type"] for e in events) == [
        "call.missed",
        "callback.completed",
        "callback.scheduled",
        "callback.scheduled",
    ]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e["data"])
    [missed] = by_type["call.missed"]
    scheduled, rescheduled = sorted(by_type["callback.scheduled"], key=lambda d: d["attempt"])
    [completed] = by_type["callback.completed"]
    assert (missed["call_id"], missed["pbx_call_id"]) == (call_id, "pbx-7")
    assert missed["callback_state"] == "queued" and missed["skip_reason"] is None
    assert scheduled["outcome"] is None and scheduled["attempt"] == 1
    assert (rescheduled["outcome"], rescheduled["attempt"]) == ("client_busy", 2)
    assert completed["callback_id"] == scheduled["callback_id"] == missed["callback_id"]
    assert completed["missed_call_ids"] == [call_id]
    assert (completed["outcome"], completed["state"], completed["attempt"]) == (
        "completed",
        "completed",
        2,
    )


async def test_the_bots_callbacks_are_calls_of_type_callback(start_app: AppFactory) -> None:
    # The first attempt finds the client busy, the second connects them.
    dialler = ScriptedDialler(
        AttemptResult(Outcome.CLIENT_BUSY, target="201", sip_status=486),
        AttemptResult(Outcome.COMPLETED, target="202", talk_s=42.0),
    )
    app = await start_app(dialler, first_delay_s=0, retry_interval_s=0.01, targets=["201", "202"])
    missed_at = datetime.now(UTC) - timedelta(minutes=5)
    async with api_session(app) as http:
        await http.post("/api/v1/calls/events", json=event("pbx-7", "missed", missed_at))

        async def two_callbacks() -> bool:
            async with http.get("/api/v1/calls?type=callback") as response:
                return len((await response.json())["calls"]) == 2

        await until(two_callbacks)
        async with http.get("/api/v1/calls?type=callback") as response:
            completed, busy = (await response.json())["calls"]
        async with http.get("/api/v1/reports/missed") as response:
            report = await response.json()
    assert (busy["status"], busy["manager"], busy["source"]) == ("busy", "201", "callback")
    assert (completed["status"], completed["manager"], completed["talk_s"]) == (
        "answered",
        "202",
        42.0,
    )
    for call in (busy, completed):
        # As the PBX wrote the missed call ("044 123 45 67"), not as the queue dials.
        assert call["direction"] == "outbound" and call["client_number"] == "0441234567"
    assert busy["types"] == ["callback"]
    assert completed["types"] == ["target", "callback"]  # 42 s >= journal.target_min_talk_s
    # The answered callback is the answered call after the miss: processed.
    assert (report["missed"], report["unprocessed"]) == (1, 0)
    assert [c["unprocessed"] for c in report["calls"]] == [False]
