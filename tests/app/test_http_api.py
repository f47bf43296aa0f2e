"""The HTTP API of a real running app over loopback: /healthz, /metrics, the
journal listing and its bearer token."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal

import aiohttp
import pytest

from tests.app.app_testkit import AUTH, StartApp
from voicebot.app import VoicebotApp
from voicebot.journal import CallOutcome, CallStart


async def test_healthz_in_peer_mode(app: VoicebotApp) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{app.http_port}/healthz") as response,
    ):
        assert response.status == 200
        body = await response.json()
    assert body["ok"] is True
    assert body["sip"]["mode"] == "peer"
    assert body["active_calls"] == 0


async def test_api_needs_the_bearer_token(app: VoicebotApp) -> None:
    url = f"http://127.0.0.1:{app.http_port}/api/v1/categorizations"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as response:
            assert response.status == 401
        async with http.get(url, headers={"Authorization": "Bearer wrong"}) as response:
            assert response.status == 401
        async with http.get(url, headers=AUTH) as response:
            assert response.status == 200
            assert (await response.json()) == {"categorizations": []}


async def test_calls_lists_journal_rows(app: VoicebotApp) -> None:
    assert app.journal is not None
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    start = CallStart("call_x", "sip-1", "pbx-1", "201", "+380441234567", "PCMA", now)
    await app.journal.start_call(start)
    await app.journal.finish_call(
        start,
        CallOutcome(
            "confirmed", "2", "asked for the address", Decimal(100), "2##1", 1, "confirmed", now
        ),
    )
    headers = AUTH
    base = f"http://127.0.0.1:{app.http_port}/api/v1/categorizations"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(base + "?status=confirmed") as response:
            calls = (await response.json())["categorizations"]
        async with http.get(base + "?status=bogus") as response:
            assert response.status == 400
        async with http.get(base + "?limit=x") as response:
            assert response.status == 400
    assert len(calls) == 1
    assert calls[0]["category"] == {"code": "2", "name": "asked for the address"}
    assert calls[0]["value"] == 100
    assert calls[0]["codec"] == "PCMA"


async def test_metrics_in_prometheus_format(app: VoicebotApp) -> None:
    app.counters.confirmed += 2
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{app.http_port}/metrics") as response,
    ):
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    assert 'voicebot_calls_total{outcome="confirmed"} 2.0' in text
    assert "voicebot_active_calls 0.0" in text
    assert "voicebot_sip_registered" not in text  # peer mode: no registration


async def test_webhook_deliveries_listed(start_app: StartApp) -> None:
    # Nothing listens on port 9 here: the delivery stays pending, retried later.
    secret = "whsec_" + base64.b64encode(b"voicebot-http-api-secret-012345").decode()
    running = await start_app(
        http={"port": 0},
        webhooks={"endpoints": [{"url": "http://127.0.0.1:9/crm", "secret": secret}]},
    )
    assert running.journal is not None
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    start = CallStart("call_w", "sip-w", None, "201", None, "PCMU", now)
    await running.journal.start_call(start)
    ids = await running.journal.finish_call(
        start,
        CallOutcome("confirmed", "1", "sale", Decimal(5), "1#5#1", 1, "confirmed", now),
    )
    url = f"http://127.0.0.1:{running.http_port}/api/v1/webhooks/deliveries"
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "?status=pending") as response:
            assert response.status == 200
            deliveries = (await response.json())["deliveries"]
        async with http.get(url + "?status=nonsense") as response:
            assert response.status == 400
    assert [d["webhook_id"] for d in deliveries] == ids
    assert deliveries[0]["event_type"] == "call.categorized"
    assert deliveries[0]["endpoint_url"] == "http://127.0.0.1:9/crm"
    assert deliveries[0]["created_at"].endswith("Z")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/categorizations",
        "/api/v1/webhooks/deliveries",
        "/api/v1/calls",
        "/api/v1/callbacks",
    ],
)
@pytest.mark.parametrize("limit", ["-1", "0", str(10**9), "abc", "1e3", ""])
async def test_every_limit_is_bounded(app: VoicebotApp, path: str, limit: str) -> None:
    # limit=-1 once reached SQLite as LIMIT -1: every row, past the page cap.
    # Out of range is a 400 naming the field, on every list under /api/v1.
    headers = AUTH
    url = f"http://127.0.0.1:{app.http_port}{path}"
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(url, params={"limit": limit}) as response,
    ):
        assert response.status == 400, await response.text()
        body = await response.json()
    assert body["field"] == "limit", body


@pytest.mark.parametrize(
    ("path", "cap"),
    [("/api/v1/categorizations", 500), ("/api/v1/webhooks/deliveries", 1000)],
)
async def test_the_cap_itself_is_served(app: VoicebotApp, path: str, cap: int) -> None:
    headers = AUTH
    url = f"http://127.0.0.1:{app.http_port}{path}"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(url, params={"limit": str(cap)}) as response:
            assert response.status == 200
        async with http.get(url, params={"limit": str(cap + 1)}) as response:
            assert response.status == 400
