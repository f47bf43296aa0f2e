"""The call journal's HTTP API on a real running app and a real SQLite file:
PBX events in, the filtered list and its cursor under inserts, one call, the
category catalogue, refusals that name the field, the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.app.app_testkit import AUTH, KYIV_JOURNAL, StartApp, api_session
from voicebot.app import VoicebotApp

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
async def app(start_app: StartApp) -> VoicebotApp:
    return await start_app(journal=KYIV_JOURNAL)


@pytest.fixture
async def http(app: VoicebotApp) -> AsyncIterator[aiohttp.ClientSession]:
    async with api_session(app) as session:
        yield session


def event(call_id: str, minutes: float, **changes: Any) -> dict[str, Any]:
    start = T0 + timedelta(minutes=minutes)
    body: dict[str, Any] = {
        "call_id": call_id,
        "direction": "inbound",
        "caller": "+380441234567",
        "callee": "+380440000000",
        "status": "answered",
        "started_at": start.isoformat(),
        "answered_at": (start + timedelta(seconds=10)).isoformat(),
        "ended_at": (start + timedelta(seconds=100)).isoformat(),
        "manager": "201",
    }
    body.update(changes)
    return body


async def post(http: aiohttp.ClientSession, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with http.post("/api/v1/calls/events", json=body) as response:
        return response.status, await response.json()


async def all_pages(http: aiohttp.ClientSession, query: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    url: str | None = f"/api/v1/calls?{query}"
    while url is not None:
        async with http.get(url) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        calls += page["calls"]
        url = f"/api/v1/calls?{query}&cursor={page['next_cursor']}" if page["next_cursor"] else None
    return calls


async def test_token_refused_and_accepted(app: VoicebotApp) -> None:
    base = f"http://127.0.0.1:{app.http_port}"
    async with aiohttp.ClientSession() as anonymous:
        for path in ("/api/v1/calls", "/api/v1/categories", "/api/v1/openapi.json"):
            async with anonymous.get(base + path) as response:
                assert response.status == 401, path
        async with anonymous.post(base + "/api/v1/calls/events", json=event("x", 0)) as response:
            assert response.status == 401
        async with anonymous.get(base + "/api/v1/calls", headers=AUTH) as response:
            assert response.status == 200
            assert await response.json() == {"calls": [], "next_cursor": None}


async def test_event_created_then_idempotent(http: aiohttp.ClientSession) -> None:
    status, call = await post(http, event("pbx-1", 0))
    assert status == 201
    assert call["client_number"] == "+380441234567" and call["manager"] == "201"
    assert (call["wait_s"], call["talk_s"]) == (10.0, 90.0)
    assert call["types"] == ["unique", "target", "unique-target"]
    assert call["started_at"] == "2026-11-20T09:00:00Z"
    status, again = await post(http, event("pbx-1", 0))
    assert status == 200 and again["id"] == call["id"]
    async with http.get(f"/api/v1/calls/{call['id']}") as response:
        assert response.status == 200 and (await response.json()) == again


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (event("b", 0, direction="sideways"), "direction"),
        (event("b", 0, started_at="2026-11-20T09:00:00"), "started_at"),
        (event("b", 0, ended_at="2026-11-20T08:00:00Z"), "ended_at"),
        (event("b", 0, status="missed"), "answered_at"),
        ({"direction": "inbound"}, "call_id"),
        (event("b", 0, caller="<script>"), "caller"),
        # Found by schemathesis: a number was read as Unix time, a 0/1 as a flag.
        (event("b", 0, started_at=0), "started_at"),
        (event("b", 0, callback=0), "callback"),
    ],
)
async def test_invalid_event_names_the_field(
    http: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    status, answer = await post(http, body)
    assert status == 400
    assert answer["field"] == field and answer["error"].startswith(field)


async def test_refusals_schemathesis_found(http: aiohttp.ClientSession) -> None:
    # The first day of the calendar, in a zone east of UTC, was a 500.
    for query in ("from=0001-01-01", "to=9999-12-31", "from=0001-01-01T00:00:00"):
        for path in ("/api/v1/calls", "/api/v1/reports/summary"):
            async with http.get(f"{path}?{query}") as response:
                assert response.status == 400, (path, query)
                assert (await response.json())["field"] == query.split("=")[0]
    # GET on the events path reached /calls/{id}; only POST is there.
    async with http.get("/api/v1/calls/events") as response:
        assert response.status == 405 and response.headers["Allow"] == "POST"
        assert (await response.json())["field"] == "method"
    async with http.post("/api/v1/categories", json={"code": "7", "name": "x", "spam": 0}) as r:
        assert r.status == 400 and (await r.json())["field"] == "spam"


async def test_body_that_is_not_json(http: aiohttp.ClientSession) -> None:
    async with http.post(
        "/api/v1/calls/events", data=b"{nope", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400 and (await response.json())["field"] == "body"
    async with http.post("/api/v1/calls/events", data=b"x=1") as response:
        assert response.status == 415
    async with http.post("/api/v1/calls/events", json=[1, 2]) as response:
        assert response.status == 400


async def test_filters(http: aiohttp.ClientSession) -> None:
    await post(http, event("a", 0))  # unique, target
    await post(http, event("b", 60, status="missed", answered_at=None))  # repeated, missed
    await post(http, event("c", 120, manager="202", caller="+380500000001"))
    await post(
        http,
        event(
            "d",
            180,
            direction="outbound",
            caller="202",
            manager="202",
            callee="+380500000001",
            ended_at=(T0 + timedelta(minutes=180, seconds=30)).isoformat(),
        ),
    )

    async def ids(query: str) -> list[str]:
        return [c["pbx_call_id"] for c in await all_pages(http, query)]

    assert await ids("") == ["d", "c", "b", "a"]
    assert await ids("manager=202") == ["d", "c"]
    assert await ids("direction=outbound") == ["d"]
    assert await ids("status=missed") == ["b"]
    assert await ids("type=repeated") == ["b"]
    assert await ids("type=missed") == ["b"]
    assert await ids("type=unique") == ["c", "a"]
    assert await ids("type=target") == ["c", "a"]
    assert await ids("number=%2B380500000001") == ["d", "c"]
    # Kyiv is UTC+2 in November: 11:30-13:00:01 local is 09:30-11:00:01 UTC (to is exclusive).
    assert await ids("from=2026-11-20T11:30&to=2026-11-20T13:00:01") == ["c", "b"]
    assert await ids("from=2026-11-20&to=2026-11-20") == ["d", "c", "b", "a"]
    assert await ids("from=2026-11-21") == []
    for bad, field in (
        ("status=lost", "status"),
        ("type=vip", "type"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("from=2026-13-40", "from"),
        ("from=yesterday", "from"),
        ("from=2026-11-21&to=2026-11-20", "to"),
        ("cursor=garbage", "cursor"),
    ):
        async with http.get(f"/api/v1/calls?{bad}") as response:
            assert response.status == 400, bad
            assert (await response.json())["field"] == field, bad
    async with http.get("/api/v1/calls/999") as response:
        assert response.status == 404
    async with http.get("/api/v1/calls/abc") as response:
        assert response.status == 400


async def test_cursor_neither_skips_nor_repeats_while_calls_arrive(
    http: aiohttp.ClientSession,
) -> None:
    for n in range(23):
        await post(http, event(f"old-{n}", n * 10, caller=f"+38050000{n:04d}"))
    seen: list[str] = []
    url: str | None = "/api/v1/calls?limit=5"
    extra = 0
    while url is not None:
        async with http.get(url) as response:
            page = await response.json()
        seen += [c["pbx_call_id"] for c in page["calls"]]
        # Newer calls, and one at the very same second as a listed one.
        await post(http, event(f"new-{extra}", 10_000 + extra))
        await post(http, event(f"tie-{extra}", 0, caller="+380991112233"))
        extra += 1
        url = f"/api/v1/calls?limit=5&cursor={page['next_cursor']}" if page["next_cursor"] else None
    olds = [s for s in seen if s.startswith("old-")]
    assert olds == [f"old-{n}" for n in reversed(range(23))]
    assert len(seen) == len(set(seen))
    assert not any(s.startswith("new-") for s in seen)


async def test_categories_crud_and_soft_delete(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/categories") as response:
        seeded = (await response.json())["categories"]
    assert [c["code"] for c in seeded] == ["1", "2", "3", "9"]
    assert next(c for c in seeded if c["code"] == "9")["spam"] is True

    new = {"code": "42", "name": "Доставка", "value": "12.50"}
    async with http.post("/api/v1/categories", json=new) as response:
        assert response.status == 201
        assert (await response.json())["value"] == 12.5
    async with http.post("/api/v1/categories", json=new) as response:
        assert response.status == 409 and (await response.json())["field"] == "code"
    for bad, field in (
        ({"code": "4a", "name": "x"}, "code"),
        ({"code": "5", "name": ""}, "name"),
        ({"code": "5", "name": "x", "value": -1}, "value"),
        ({"code": "5", "name": "x", "colour": "red"}, "colour"),
    ):
        async with http.post("/api/v1/categories", json=bad) as response:
            assert response.status == 400, bad
            assert (await response.json())["field"] == field, bad
    async with http.put("/api/v1/categories/42", json={"name": "Доставка", "spam": True}) as r:
        assert r.status == 200 and (await r.json())["spam"] is True
    async with http.put("/api/v1/categories/77", json={"name": "x"}) as response:
        assert response.status == 404

    # A call filed under 42, then 42 deleted: the call still reads "42 Доставка".
    await post(http, event("cat-1", 0))
    app_calls = await all_pages(http, "")
    call_id = app_calls[0]["id"]
    async with http.delete("/api/v1/categories/42") as response:
        assert response.status == 200 and (await response.json())["deleted"] is True
    async with http.get("/api/v1/categories") as response:
        assert "42" not in [c["code"] for c in (await response.json())["categories"]]
    async with http.get("/api/v1/categories?include_deleted=true") as response:
        assert "42" in [c["code"] for c in (await response.json())["categories"]]
    async with http.get("/api/v1/categories/42") as response:
        assert (await response.json())["deleted"] is True
    async with http.delete("/api/v1/categories/42") as response:
        assert response.status == 404
    async with http.get(f"/api/v1/calls/{call_id}") as response:
        assert response.status == 200


async def test_openapi_document_describes_the_routes(http: aiohttp.ClientSession) -> None:
    async with http.get("/api/v1/openapi.json") as response:
        assert response.status == 200
        doc = await response.json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) >= {
        "/api/v1/calls",
        "/api/v1/calls/{id}",
        "/api/v1/calls/events",
        "/api/v1/categories",
        "/api/v1/categories/{code}",
    }
    listing = doc["paths"]["/api/v1/calls"]["get"]
    params = {p["name"]: p for p in listing["parameters"]}
    assert params["status"]["schema"]["enum"] == ["answered", "missed", "busy", "failed"]
    assert params["limit"]["schema"]["maximum"] == 500
    assert "from" in params and "cursor" in params
    body = doc["paths"]["/api/v1/calls/events"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    event_schema = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert set(event_schema["required"]) == {"call_id", "direction", "status", "started_at"}
