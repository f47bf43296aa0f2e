"""The HTTP API's bound on work at once (issue 6 item 10), against the real app:
in the light lane (everything but the heavy reads), `http.api_concurrency`
requests in their handlers, `http.api_queue` waiting, the next one 503 +
Retry-After at once; /healthz and /metrics stay outside. (The heavy lane and
the worker processes: tests/app/test_api_workers.py.)

A client that sends its POST body slowly holds a slot (its handler is
waiting for the body), which is how the test fills the gate without timing."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.app.app_testkit import StartApp
from tests.polling import until
from voicebot.app import VoicebotApp
from voicebot.slices import map_in_slices

EVENT = json.dumps(
    {
        "call_id": "slow-1",
        "direction": "inbound",
        "caller": "+79990001122",
        "status": "missed",
        "started_at": "2026-11-20T10:00:00+00:00",
    }
).encode()


@pytest.fixture
async def app(start_app: StartApp) -> VoicebotApp:
    return await start_app(
        calls=2, http={"port": 0, "api_concurrency": 1, "api_queue": 1}, webhooks={"endpoints": []}
    )


async def slow_post(app: VoicebotApp) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A POST of EVENT whose body is sent only in part, holding a slot of the
    gate (its handler waits for the rest): returns once it holds it."""
    running = app.request_gate.light.running
    reader, writer = await asyncio.open_connection("127.0.0.1", app.http_port)
    writer.write(
        b"POST /api/v1/calls/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(EVENT)}\r\nConnection: close\r\n\r\n".encode()
        + EVENT[:10]
    )
    await writer.drain()
    await until(
        lambda: app.request_gate.light.running == running + 1, what="the POST in its handler"
    )
    return reader, writer


async def test_full_gate_answers_503_at_once_and_the_queue_is_served_after(
    app: VoicebotApp,
) -> None:
    gate = app.request_gate.light
    base = f"http://127.0.0.1:{app.http_port}"
    # A holds the one slot: headers sent, body not yet
    reader, writer = await slow_post(app)
    assert gate.running == 1
    async with aiohttp.ClientSession() as http:
        # B waits in the queue
        queued = asyncio.create_task(http.get(f"{base}/api/v1/calls/1"))
        await until(lambda: gate.waiting == 1)
        # C finds slot and queue full: 503 at once, with Retry-After
        async with http.get(f"{base}/api/v1/categorizations") as refused:
            assert refused.status == 503
            assert refused.headers["Retry-After"] == "1"
            assert "busy" in (await refused.json())["error"]
        # probes and metrics are not gated
        async with http.get(f"{base}/healthz") as health:
            assert health.status in (200, 503)
            assert (await health.json())["sip"]
        async with http.get(f"{base}/metrics") as metrics:
            assert "voicebot_http_busy_refused_total 1.0" in await metrics.text()
        assert not queued.done()
        # A's body arrives: A is answered, then B gets the slot
        writer.write(EVENT[10:])
        await writer.drain()
        head = await reader.readline()
        assert head.startswith(b"HTTP/1.1 201"), head
        writer.close()
        async with await queued as served:
            assert served.status == 200
            assert (await served.json())["pbx_call_id"] == "slow-1"
    assert gate.refused == 1 and gate.running == 0 and gate.waiting == 0


async def test_map_in_slices_lets_other_tasks_run_between_slices() -> None:
    turns = 0

    async def other() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await asyncio.sleep(0)
    turns = 0
    out = await map_in_slices(lambda n: n * 2, range(500), size=50)
    task.cancel()
    assert out == [n * 2 for n in range(500)]
    assert turns >= 9  # a turn between each of the ten slices, not one at the end


async def test_a_body_in_two_segments_is_read_whole(app: VoicebotApp) -> None:
    """Found by the gate test: the body parser took the first segment for the body."""
    reader, writer = await slow_post(app)
    assert app.request_gate.light.running == 1
    writer.write(EVENT[10:])
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 201")
    writer.close()


async def test_heavy_reads_take_the_heavy_lane_and_the_rest_the_light_one(
    app: VoicebotApp,
) -> None:
    """With the light lane full (one running, one waiting), the routes marked
    heavy where they are registered are still answered, and the others are
    refused: the lane follows the route, not a list of paths."""
    base = f"http://127.0.0.1:{app.http_port}"
    reader, writer = await slow_post(app)
    async with aiohttp.ClientSession() as http:
        queued = asyncio.create_task(http.get(f"{base}/api/v1/calls/1"))
        await until(lambda: app.request_gate.light.waiting == 1)
        heavy = ["/api/v1/calls", "/api/v1/calls?limit=5", "/api/v1/reports/summary", "/"]
        for path in heavy:
            for method in ("GET", "HEAD"):
                async with http.request(method, base + path, allow_redirects=False) as got:
                    assert got.status != 503, (method, path)
        light = ["/api/v1/calls/1", "/api/v1/categorizations", "/login", "/api/v1/openapi.json"]
        for path in light:
            async with http.get(base + path) as got:
                assert got.status == 503, path
        writer.write(EVENT[10:])
        await writer.drain()
        assert (await reader.readline()).startswith(b"HTTP/1.1 201")
        writer.close()
        async with await queued as served:
            assert served.status == 200
    assert app.request_gate.light.refused == len(light)
    assert app.request_gate.heavy.refused == 0
