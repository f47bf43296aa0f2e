"""The Dispatcher's decisions under a manual clock: no real sleeping.

The HTTP side is a scripted sender; the database is a real SQLite file.
"""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from email.utils import format_datetime

import pytest
from structlog.testing import capture_logs
from webhooks_testkit import SECRET, ScriptedSender

from tests.clock import ManualClock
from tests.journal.db_probes import trips_to_the_database_thread
from voicebot.journal.database import connector
from webhooks import AttemptResult, DeliveryPolicy, Dispatcher, Endpoint, enqueue
from webhooks.outbox import count_by_status, enable_endpoint, list_deliveries, replay

A = Endpoint("http://a.example/hook", [SECRET])
B = Endpoint("http://b.example/hook", [SECRET])
NO_JITTER = DeliveryPolicy(jitter=0)


def fail(status: int | None = 500, **headers: str) -> AttemptResult:
    return AttemptResult(
        status=status, error=None if status else "connection failed", headers=headers
    )


async def put(conn, clock, endpoints=(A,), n: int = 1) -> list[str]:
    ids = []
    for i in range(n):
        ids += await enqueue(conn, "call.categorized", {"i": i}, list(endpoints), now=clock.now())
    await conn.commit()
    return ids


def dispatcher(db_path, clock, sender, endpoints=(A,), policy=NO_JITTER, **kw) -> Dispatcher:
    return Dispatcher(
        connector(db_path),
        list(endpoints),
        policy,
        clock,
        sender=sender,
        rng=random.Random(3),
        **kw,
    )


async def only(conn) -> object:
    [row] = await list_deliveries(conn)
    return row


async def test_first_attempt_is_immediate_and_success_is_recorded(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    [webhook_id] = await put(conn, clock)
    async with dispatcher(db_path, clock, sender) as d:
        with capture_logs() as logs:
            assert await d.run_once() == 1
        assert await d.run_once() == 0
    assert [s.webhook_id for s in sender.sent] == [webhook_id]
    assert sender.sent[0].timestamp == int(clock.now().timestamp())
    row = await only(conn)
    assert (row.status, row.attempts, row.last_status) == ("delivered", 1, 200)
    assert d.metrics.delivered == 1 and d.metrics.attempts == 1
    [line] = [entry for entry in logs if entry["event"] == "webhook.delivered"]
    assert line["webhook_id"] == webhook_id and line["endpoint"] == A.url and line["status"] == 200


async def test_full_retry_schedule_then_dead_letter(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    [webhook_id] = await put(conn, clock)
    sender.answer(A.url, fail(500))
    async with dispatcher(db_path, clock, sender) as d:
        assert await d.run_once() == 1
        for delay in NO_JITTER.schedule[1:]:
            clock.advance(delay - 0.01)
            assert await d.run_once() == 0, f"too early for the {delay}s retry"
            clock.advance(0.01)
            with capture_logs() as logs:
                assert await d.run_once() == 1
        clock.advance(10 * 86400)
        assert await d.run_once() == 0
    assert len(sender.sent) == 10
    assert {s.webhook_id for s in sender.sent} == {webhook_id}
    row = await only(conn)
    assert (row.status, row.attempts, row.last_status) == ("failed", 10, 500)
    assert row.next_attempt_at is None
    assert d.metrics.dead_lettered == 1 and d.metrics.failed_attempts == 10
    assert any(e["event"] == "webhook.dead_lettered" for e in logs)


async def test_connection_errors_and_timeouts_are_retried(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    await put(conn, clock)
    sender.answer(
        A.url,
        AttemptResult(status=None, error="connection failed: refused"),
        AttemptResult(status=None, error="timeout after 15s"),
        AttemptResult(status=204),
    )
    async with dispatcher(db_path, clock, sender) as d:
        await d.run_once()
        assert (await only(conn)).last_error == "connection failed: refused"
        clock.advance(5)
        await d.run_once()
        assert (await only(conn)).last_error == "timeout after 15s"
        clock.advance(300)
        await d.run_once()
    row = await only(conn)
    assert (row.status, row.attempts) == ("delivered", 3)


async def test_jitter_bounds_in_the_stored_schedule(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    await put(conn, clock, n=200)
    sender.answer(A.url, fail(500))
    policy = DeliveryPolicy(jitter=0.1, concurrency_per_endpoint=64)
    async with dispatcher(db_path, clock, sender, policy=policy) as d:
        while await d.run_once():
            pass
    gaps = [r.next_attempt_at - r.last_attempt_at for r in await list_deliveries(conn, limit=500)]
    assert len(gaps) == 200
    assert all(4.5 <= gap <= 5.5 for gap in gaps)
    assert max(gaps) - min(gaps) > 0.5, "retries are spread, not synchronised"


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "120", 120.0), (503, "http-date-90", 90.0), (429, "1", 5.0), (500, "120", 5.0)],
)
async def test_retry_after_is_honoured_on_429_and_503(
    conn, db_path, clock: ManualClock, sender: ScriptedSender, status, retry_after, expected
) -> None:
    if retry_after == "http-date-90":
        retry_after = format_datetime(clock.now() + timedelta(seconds=90), usegmt=True)
    await put(conn, clock)
    sender.answer(A.url, fail(status, **{"Retry-After": retry_after}), AttemptResult(status=200))
    async with dispatcher(db_path, clock, sender) as d:
        await d.run_once()
        row = await only(conn)
        assert row.next_attempt_at - row.last_attempt_at == pytest.approx(expected)
        clock.advance(expected - 0.5)
        assert await d.run_once() == 0
        clock.advance(0.5)
        assert await d.run_once() == 1
    assert (await only(conn)).status == "delivered"


async def test_410_disables_the_endpoint_and_dead_letters_its_queue(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    await put(conn, clock, endpoints=(A, B), n=6)
    sender.answer(A.url, fail(410))
    policy = DeliveryPolicy(jitter=0, concurrency_per_endpoint=1)
    async with dispatcher(db_path, clock, sender, endpoints=(A, B), policy=policy) as d:
        with capture_logs() as logs:
            await d.run_once()
        assert A.url in d.disabled
        while await d.run_once():
            pass
        assert d.metrics.endpoints_disabled == 1
        assert d.metrics.dead_lettered == 6
    assert [s.url for s in sender.sent].count(A.url) == 1, "no more requests after 410"
    assert [s.url for s in sender.sent].count(B.url) == 6
    rows = await list_deliveries(conn, limit=50)
    assert {r.status for r in rows if r.endpoint_url == A.url} == {"failed"}
    assert {r.status for r in rows if r.endpoint_url == B.url} == {"delivered"}
    [line] = [e for e in logs if e["event"] == "webhook_endpoint.disabled"]
    assert line["log_level"] == "error" and line["endpoint"] == A.url and line["status"] == 410

    # It stays disabled across a restart; new events to it are dead-lettered, not sent.
    await put(conn, clock, endpoints=(A,))
    async with dispatcher(db_path, clock, sender, endpoints=(A, B)) as d2:
        assert A.url in d2.disabled
        await d2.run_once()
    assert [s.url for s in sender.sent].count(A.url) == 1
    assert (await count_by_status(conn))["failed"] == 7

    # The operator re-enables it and replays the dead letters.
    sender.answer(A.url, AttemptResult(status=200))
    assert await enable_endpoint(conn, A.url)
    assert await replay(conn, now=clock.now(), failed=True) == 7
    async with dispatcher(db_path, clock, sender, endpoints=(A, B)) as d3:
        while await d3.run_once():
            pass
    assert (await count_by_status(conn))["delivered"] == 13


async def test_replay_keeps_the_original_webhook_id(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    [first, second] = await put(conn, clock, n=2)
    sender.answer(A.url, fail(500))
    policy = DeliveryPolicy(schedule=(0,), jitter=0)
    async with dispatcher(db_path, clock, sender, policy=policy) as d:
        await d.run_once()
        assert (await count_by_status(conn))["failed"] == 2
        sender.answer(A.url, AttemptResult(status=200))
        assert await replay(conn, now=clock.now(), webhook_id=first) == 1
        await d.run_once()
        counts = await count_by_status(conn)
        assert (counts["delivered"], counts["failed"]) == (1, 1)
        assert await replay(conn, now=clock.now(), failed=True) == 1
        await d.run_once()
        # replaying a delivered message sends it again, same id
        assert await replay(conn, now=clock.now(), webhook_id=second) == 1
        await d.run_once()
    assert [s.webhook_id for s in sender.sent] == [first, second, first, second, second]
    assert (await count_by_status(conn))["delivered"] == 2


async def test_rows_left_in_flight_by_a_dead_process_are_resent(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    ids = await put(conn, clock, n=3)
    await conn.execute("UPDATE webhooks_deliveries SET status = 'in_flight'")
    await conn.commit()
    async with dispatcher(db_path, clock, sender) as d:
        assert d.metrics.recovered_in_flight == 3
        await d.run_once()
    assert sorted(s.webhook_id for s in sender.sent) == sorted(ids)
    assert (await count_by_status(conn))["delivered"] == 3


async def test_a_slow_endpoint_cannot_starve_the_others(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    await put(conn, clock, endpoints=(A, B), n=20)
    sender.gates[A.url] = asyncio.Event()  # A never answers until released
    d = dispatcher(db_path, clock, sender, endpoints=(A, B), poll_interval_s=0.05)
    await d.start()
    try:
        for _ in range(200):
            if (await count_by_status(conn))["delivered"] == 20:
                break
            await asyncio.sleep(0.01)
        counts = await count_by_status(conn)
        assert counts["delivered"] == 20, "B got everything while A hangs"
        assert counts["in_flight"] == 4 and sender.max_in_flight[A.url] == 4
        assert sender.max_in_flight[B.url] <= 4
        sender.gates[A.url].set()
        for _ in range(200):
            if (await count_by_status(conn))["delivered"] == 40:
                break
            await asyncio.sleep(0.01)
        assert (await count_by_status(conn))["delivered"] == 40
        assert sender.max_in_flight[A.url] == 4
    finally:
        await d.stop()


async def test_stop_puts_unfinished_attempts_back(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    await put(conn, clock, n=2)
    sender.gates[A.url] = asyncio.Event()
    d = dispatcher(db_path, clock, sender, poll_interval_s=0.05)
    await d.start()
    for _ in range(100):
        if len(sender.sent) == 2:
            break
        await asyncio.sleep(0.01)
    await d.stop(grace_s=0.05)
    rows = await list_deliveries(conn)
    assert {(r.status, r.attempts) for r in rows} == {("pending", 0)}


async def test_notify_wakes_the_loop_without_waiting_for_the_poll(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    d = dispatcher(db_path, clock, sender, poll_interval_s=3600)
    await d.start()
    try:
        await asyncio.sleep(0.02)  # the loop is now parked on its hour-long poll
        await put(conn, clock)
        d.notify()
        for _ in range(100):
            if sender.sent:
                break
            await asyncio.sleep(0.01)
        assert len(sender.sent) == 1
    finally:
        await d.stop()


async def test_prune_forgets_old_deliveries_but_keeps_dead_letters(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    await put(conn, clock, endpoints=(A, B), n=3)
    sender.answer(B.url, fail(500))
    policy = DeliveryPolicy(schedule=(0,), retention_s=86400)
    async with dispatcher(db_path, clock, sender, endpoints=(A, B), policy=policy) as d:
        await d.run_once()
        clock.advance(86399)
        assert await d.prune() == 0
        clock.advance(2)
        assert await d.prune() == 3
    assert await count_by_status(conn) == {
        "pending": 0,
        "in_flight": 0,
        "delivered": 0,
        "failed": 3,
    }
    async with conn.execute("SELECT COUNT(*) FROM webhooks_messages") as cursor:
        assert (await cursor.fetchone())[0] == 3, "messages with dead letters are kept"


async def test_deliveries_for_unconfigured_endpoints_wait(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    await put(conn, clock, endpoints=(A, B))
    async with dispatcher(db_path, clock, sender, endpoints=(A,)) as d:
        await d.run_once()
    counts = await count_by_status(conn)
    assert (counts["delivered"], counts["pending"]) == (1, 1)


async def test_outcomes_of_deliveries_finishing_together_are_written_together(
    conn, db_path, clock: ManualClock, sender: ScriptedSender
) -> None:
    """32 deliveries finish at once (16 accepted by A, 16 refused by B): the
    claim is one trip to the database thread and the 32 outcomes one (both
    kinds in one transaction), not one lock hold and trip each, which under
    load kept new claims waiting a second behind them."""
    await put(conn, clock, endpoints=(A, B), n=16)
    sender.answer(B.url, fail(500))
    policy = DeliveryPolicy(jitter=0, concurrency_per_endpoint=16)
    async with dispatcher(db_path, clock, sender, endpoints=(A, B), policy=policy) as d:
        assert d._conn is not None
        trips = trips_to_the_database_thread(d._conn)
        assert await d.run_once() == 32
        assert trips[0] == 2 + 1  # A's claim and B's claim, then the outcomes
    rows = await list_deliveries(conn)
    assert sorted((r.endpoint_url, r.status, r.attempts) for r in rows) == sorted(
        [(A.url, "delivered", 1)] * 16 + [(B.url, "pending", 1)] * 16
    )
