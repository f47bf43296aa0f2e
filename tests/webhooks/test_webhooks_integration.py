"""Real HTTP on loopback: an aiohttp receiver that verifies every request with
the public `standardwebhooks` library, and the Dispatcher's own aiohttp client.
Schedules are shrunk to tens of milliseconds so retries happen in real time."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from structlog.testing import capture_logs
from webhooks_testkit import SECRET, SECRET_2, Receiver

from tests.polling import until
from voicebot.journal.database import connector
from webhooks import DeliveryPolicy, Dispatcher, Endpoint, SystemClock, enqueue
from webhooks.outbox import count_by_status, list_deliveries

FAST = DeliveryPolicy(timeout_s=2, schedule=(0, 0.05, 0.05, 0.05, 0.05, 0.05), jitter=0.1)


async def put(conn, endpoints, n: int = 1, event: str = "call.categorized") -> list[str]:
    ids = []
    for i in range(n):
        ids += await enqueue(conn, event, {"call_id": f"c{i}"}, endpoints, now=_now())
    await conn.commit()
    return ids


def _now():
    return SystemClock().now()


async def test_delivery_verifies_with_standardwebhooks(conn, db_path, receiver: Receiver) -> None:
    endpoint = Endpoint(receiver.url, [SECRET])
    [webhook_id] = await put(conn, [endpoint])
    async with Dispatcher(connector(db_path), [endpoint], FAST) as d:
        await d.run_once()
    [request] = receiver.received
    assert request.verified and request.webhook_id == webhook_id
    assert request.headers["Content-Type"] == "application/json"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 5
    body = json.loads(request.body)
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "call.categorized" and body["data"] == {"call_id": "c0"}
    assert (await list_deliveries(conn))[0].status == "delivered"


async def test_rotation_either_secret_verifies(conn, db_path, receiver: Receiver) -> None:
    receiver.secrets = [SECRET_2]  # the receiver already switched to the new secret
    endpoint = Endpoint(receiver.url, [SECRET, SECRET_2])
    await put(conn, [endpoint])
    async with Dispatcher(connector(db_path), [endpoint], FAST) as d:
        await d.run_once()
    assert receiver.received[0].verified
    assert len(receiver.received[0].headers["webhook-signature"].split(" ")) == 2


async def test_500_then_ok_is_retried_with_the_same_webhook_id(
    conn, db_path, receiver: Receiver
) -> None:
    receiver.script = ["500", "500"]
    endpoint = Endpoint(receiver.url, [SECRET])
    [webhook_id] = await put(conn, [endpoint])
    d = Dispatcher(connector(db_path), [endpoint], FAST, poll_interval_s=0.05)
    await d.start()
    try:
        await until(lambda: _status_is(conn, "delivered"))
    finally:
        await d.stop()
    assert [r.webhook_id for r in receiver.received] == [webhook_id] * 3
    assert all(r.verified for r in receiver.received)
    assert d.metrics.failed_attempts == 2 and d.metrics.delivered == 1


async def test_hang_past_the_timeout_is_a_failed_attempt(conn, db_path, receiver: Receiver) -> None:
    receiver.script = ["hang"]
    endpoint = Endpoint(receiver.url, [SECRET])
    policy = DeliveryPolicy(timeout_s=0.3, schedule=(0, 0.05), jitter=0)
    await put(conn, [endpoint])
    async with Dispatcher(connector(db_path), [endpoint], policy) as d:
        started = time.monotonic()
        await d.run_once()
        assert 0.25 < time.monotonic() - started < 2
        row = (await list_deliveries(conn))[0]
        assert (row.status, row.last_error) == ("pending", "timeout after 0.3s")
        await asyncio.sleep(0.06)
        await d.run_once()
    assert (await list_deliveries(conn))[0].status == "delivered"
    assert len({r.webhook_id for r in receiver.received}) == 1


async def test_connection_refused_is_retried_until_the_receiver_is_up(
    conn, db_path, closed_url: str
) -> None:
    endpoint = Endpoint(closed_url, [SECRET])
    await put(conn, [endpoint], n=3)
    policy = DeliveryPolicy(timeout_s=1, schedule=(0,) + (0.05,) * 50, jitter=0)
    d = Dispatcher(connector(db_path), [endpoint], policy, poll_interval_s=0.05)
    await d.start()
    receiver = Receiver([SECRET])
    try:
        await until(lambda: _failed_attempts(d, 6))
        rows = await list_deliveries(conn)
        assert all(r.last_error.startswith("connection failed") for r in rows)
        await receiver.start(port=int(closed_url.split(":")[2].split("/")[0]))
        await receiver.wait_for(3)
        await until(lambda: _count(conn, "delivered", 3))
    finally:
        await d.stop()
        await receiver.stop()


async def test_410_gone_disables_the_endpoint(conn, db_path, receiver: Receiver) -> None:
    receiver.mode = "410"
    endpoint = Endpoint(receiver.url, [SECRET])
    await put(conn, [endpoint], n=5)
    policy = DeliveryPolicy(timeout_s=1, schedule=FAST.schedule, concurrency_per_endpoint=1)
    async with Dispatcher(connector(db_path), [endpoint], policy) as d:
        while await d.run_once():
            pass
        assert d.disabled and d.metrics.endpoints_disabled == 1
    assert len(receiver.received) == 1
    assert (await count_by_status(conn))["failed"] == 5


async def test_429_retry_after_is_honoured(conn, db_path, receiver: Receiver) -> None:
    receiver.script = ["429"]
    receiver.retry_after = "30"
    endpoint = Endpoint(receiver.url, [SECRET])
    await put(conn, [endpoint])
    async with Dispatcher(connector(db_path), [endpoint], FAST) as d:
        await d.run_once()
        row = (await list_deliveries(conn))[0]
        assert row.last_status == 429
        assert row.next_attempt_at - row.last_attempt_at == pytest.approx(30, abs=0.01)
        await asyncio.sleep(0.1)
        assert await d.run_once() == 0, "the schedule alone would have retried by now"


async def test_a_hanging_receiver_does_not_starve_another(conn, db_path) -> None:
    slow, fast = Receiver([SECRET]), Receiver([SECRET])
    slow.mode = "hang"
    await slow.start()
    await fast.start()
    endpoints = [Endpoint(slow.url, [SECRET]), Endpoint(fast.url, [SECRET])]
    await put(conn, endpoints, n=30)
    policy = DeliveryPolicy(timeout_s=10, schedule=FAST.schedule, concurrency_per_endpoint=4)
    d = Dispatcher(connector(db_path), endpoints, policy, poll_interval_s=0.05)
    await d.start()
    try:
        await fast.wait_for(30, timeout=5)
        assert len(slow.received) == 4, "the slow one holds exactly its own 4 slots"
    finally:
        await d.stop(grace_s=0.1)
        await slow.stop()
        await fast.stop()
    counts = await count_by_status(conn)
    assert (counts["delivered"], counts["pending"]) == (30, 30)


async def _status_is(conn, status: str) -> bool:
    rows = await list_deliveries(conn)
    return bool(rows) and all(r.status == status for r in rows)


async def _count(conn, status: str, n: int) -> bool:
    return (await count_by_status(conn))[status] == n


async def _failed_attempts(d: Dispatcher, n: int) -> bool:
    return d.metrics.failed_attempts >= n


async def test_application_writes_concurrently_with_delivery(
    conn, db_path, receiver: Receiver
) -> None:
    """The journal commits while the dispatcher claims and records: no
    SQLITE_BUSY, nothing stuck in flight (regression: a write upgrading a
    read snapshot on the dispatcher's shared connection failed at once)."""
    endpoint = Endpoint(receiver.url, [SECRET])
    d = Dispatcher(connector(db_path), [endpoint], FAST, poll_interval_s=0.05)
    await d.start()
    try:
        with capture_logs() as logs:
            for i in range(300):
                await enqueue(conn, "call.categorized", {"n": i}, [endpoint], now=_now())
                await conn.commit()
                d.notify()
                if i % 10 == 0:
                    await asyncio.sleep(0)
            await receiver.wait_for(300, timeout=10)
            await until(lambda: _count(conn, "delivered", 300))
    finally:
        await d.stop()
    assert not [e for e in logs if e["log_level"] == "error"]
    assert d.metrics.failed_attempts == 0
