"""The callback queue on a real SQLite file: merging, refusals, atomic and
leased claims, cancellation races, daily caps, and the webhooks each change
commits with it."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from tests.callbacks.callbacks_testkit import T0, QueueFactory
from tests.clock import ManualClock
from voicebot.callbacks.attempt import AttemptResult, Outcome
from voicebot.callbacks.queue import CallbackQueue, JobFilter


async def webhook_types(queue: CallbackQueue) -> list[str]:
    async with queue.connection.execute(
        "SELECT event_type FROM webhooks_messages ORDER BY rowid"
    ) as cursor:
        return [row[0] for row in await cursor.fetchall()]


async def webhook_bodies(queue: CallbackQueue, event_type: str) -> list[dict[str, object]]:
    async with queue.connection.execute(
        "SELECT body FROM webhooks_messages WHERE event_type = ? ORDER BY rowid", (event_type,)
    ) as cursor:
        return [json.loads(row[0])["data"] for row in await cursor.fetchall()]


async def test_repeated_misses_merge_into_one_job(make_queue: QueueFactory) -> None:
    queue = await make_queue()
    first = await queue.missed_call("0441234567", missed_at=T0, source="pbx", call_id=1)
    second = await queue.missed_call(
        "+380441234567", missed_at=T0 + timedelta(minutes=3), source="pbx", call_id=2
    )
    again = await queue.missed_call("044 123 45 67", missed_at=T0, source="pbx", call_id=1)
    assert first.created and not second.created and not again.created
    assert first.job.id == second.job.id == again.job.id
    job = await queue.get(first.job.id)
    assert job is not None
    assert [m.call_id for m in job.missed_calls] == [1, 2]
    assert job.missed_at == (T0 + timedelta(minutes=3)).timestamp()
    assert job.due_at == (T0 + timedelta(seconds=60)).timestamp()  # the first miss set it
    assert job.dial == "+380441234567"
    assert await webhook_types(queue) == ["call.missed", "callback.scheduled", "call.missed"]
    scheduled = (await webhook_bodies(queue, "callback.scheduled"))[0]
    assert scheduled["callback_id"] == job.id and scheduled["missed_call_ids"] == [1]


async def test_anonymous_and_foreign_callers_are_recorded_and_skipped(
    make_queue: QueueFactory,
) -> None:
    queue = await make_queue()
    anonymous = await queue.missed_call("anonymous", missed_at=T0, source="pbx", call_id=7)
    foreign = await queue.missed_call("+4930123456", missed_at=T0, source="pbx", call_id=8)
    assert (anonymous.skipped, foreign.skipped) == ("anonymous", "not_allowed")
    assert anonymous.job.state == foreign.job.state == "skipped"
    assert foreign.job.client_number == "+4930123456" and foreign.job.dial is None
    missed = await webhook_bodies(queue, "call.missed")
    assert [m["skip_reason"] for m in missed] == ["anonymous", "not_allowed"]
    assert await queue.next_due() is None
    assert await queue.claim("a") is None


async def test_two_schedulers_never_claim_one_job_twice(make_queue: QueueFactory) -> None:
    """Two queues on two connections to one file claim concurrently."""
    one, two = await make_queue(), await make_queue()
    for n in range(40):
        await one.missed_call(f"04412{n:05d}", missed_at=T0 - timedelta(minutes=5), source="pbx")

    async def drain(queue: CallbackQueue, name: str) -> list[int]:
        ids: list[int] = []
        size = 1
        while claims := await queue.claim_batch(name, size):
            ids += [claim.job.id for claim in claims]
            assert [c.attempt_id for c in claims] == sorted({c.attempt_id for c in claims})
            size = size % 5 + 1  # batches of 1..5, as free call slots come
        return ids

    a, b = await asyncio.gather(drain(one, "a"), drain(two, "b"))
    assert len(a) + len(b) == 40
    assert len(set(a) | set(b)) == 40 and not set(a) & set(b)
    async with one.connection.execute(
        "SELECT count(*), count(DISTINCT job_id) FROM callback_attempts"
    ) as cursor:
        assert tuple(await cursor.fetchone() or ()) == (40, 40)


async def test_a_dead_claimers_job_comes_back_later_never_at_once(
    make_queue: QueueFactory, clock: ManualClock
) -> None:
    dead = await make_queue(lease_s=60)
    intake = await dead.missed_call("0441234567", missed_at=T0 - timedelta(hours=1), source="pbx")
    claim = await dead.claim("dead")
    assert claim is not None and claim.round == 1
    await dead.close()

    alive = await make_queue(lease_s=60)
    assert await alive.recover_expired() == []  # the lease still runs
    assert await alive.claim("alive") is None
    clock.advance(61)
    [recovered] = await alive.recover_expired()
    assert (recovered.state, recovered.round, recovered.reason) == ("queued", 2, "interrupted")
    assert await alive.claim("alive") is None  # not again at once: the call may have gone out
    clock.advance(600)
    again = await alive.claim("alive")
    assert again is not None and again.job.id == intake.job.id and again.round == 2
    job = await alive.get(intake.job.id)
    assert job is not None
    assert [a.outcome for a in job.attempt_log] == ["interrupted", None]


async def test_answered_call_cancels_a_queued_job(make_queue: QueueFactory) -> None:
    queue = await make_queue()
    intake = await queue.missed_call("0441234567", missed_at=T0, source="pbx", call_id=1)
    # An answered call from before the miss cancels nothing.
    assert await queue.answered_call("0441234567", at=T0 - timedelta(minutes=1)) is None
    job = await queue.answered_call("+380441234567", at=T0 + timedelta(minutes=2))
    assert job is not None and (job.state, job.reason) == ("cancelled", "answered")
    assert (await webhook_bodies(queue, "callback.cancelled"))[0]["callback_id"] == intake.job.id


async def test_cancellation_race_with_a_ringing_attempt(
    make_queue: QueueFactory, clock: ManualClock
) -> None:
    """The client gets through while the bot's attempt rings: the attempt is
    not interrupted; the job ends cancelled unless the attempt completed it."""
    queue = await make_queue()
    for number, outcome, final in (
        ("0441234567", Outcome.CLIENT_BUSY, "cancelled"),
        ("0441234568", Outcome.COMPLETED, "completed"),
    ):
        await queue.missed_call(number, missed_at=T0 - timedelta(minutes=5), source="pbx")
        claim = await queue.claim("s")
        assert claim is not None
        ringing = await queue.answered_call(number, at=T0, reason="manager_called")
        assert ringing is not None
        assert (ringing.state, ringing.cancel_requested) == ("dialling", "manager_called")
        done = await queue.finish(claim, AttemptResult(outcome, target="201"))
        assert done is not None and done.state == final


async def test_daily_cap_postpones_the_claim_to_tomorrow(
    make_queue: QueueFactory, clock: ManualClock
) -> None:
    queue = await make_queue(max_calls_per_number_per_day=2, max_attempts=5, retry_interval_s=60)
    await queue.missed_call("0441234567", missed_at=T0 - timedelta(minutes=5), source="pbx")
    for _ in range(2):
        claim = await queue.claim("s")
        assert claim is not None
        await queue.finish(claim, AttemptResult(Outcome.CLIENT_NO_ANSWER, target="201"))
        clock.advance(61)
    job = (await queue.list(JobFilter()))[0][0]
    # The second result already saw the cap: tomorrow 09:00 Kyiv (07:00 UTC).
    tomorrow = (T0 + timedelta(days=1)).replace(hour=7).timestamp()
    assert (job.reason, job.due_at) == ("daily_cap", tomorrow)
    assert await queue.claim("s") is None


async def test_operator_cancel_and_retry(make_queue: QueueFactory) -> None:
    queue = await make_queue()
    intake = await queue.missed_call("0441234567", missed_at=T0, source="pbx")
    cancelled = await queue.cancel(intake.job.id)
    assert cancelled.state == "cancelled"
    retried = await queue.retry(intake.job.id)
    assert (retried.state, retried.due_at) == ("queued", T0.timestamp())
    claim = await queue.claim("s")
    assert claim is not None and claim.job.id == intake.job.id


async def test_list_filters_and_cursor(make_queue: QueueFactory, clock: ManualClock) -> None:
    queue = await make_queue()
    for n in range(7):
        await queue.missed_call(f"04400000{n:02d}", missed_at=T0, source="pbx")
        clock.advance(1)
    await queue.missed_call("anonymous", missed_at=T0, source="pbx")
    seen: list[int] = []
    cursor: str | None = None
    while True:
        page, cursor = await queue.list(JobFilter(state="queued"), limit=3, cursor=cursor)
        seen += [job.id for job in page]
        if cursor is None:
            break
        # Rows added while paging never show up twice or push one out.
        await queue.missed_call(f"04411111{len(seen):02d}", missed_at=T0, source="pbx")
    assert seen[:7] == sorted(seen[:7], reverse=True) and len(set(seen)) == len(seen)
    assert {j.client_number for j in (await queue.list(JobFilter(number="0440000003")))[0]} == {
        "+380440000003"
    }
    assert [j.state for j in (await queue.list(JobFilter(state="skipped")))[0]] == ["skipped"]


async def test_a_cancelled_write_leaves_no_transaction_open(make_queue: QueueFactory) -> None:
    """A lease renewal cancelled on its way (the attempt ended meanwhile)
    must not leave its BEGIN open for the next write to trip on."""
    queue = await make_queue()
    await queue.missed_call("0441234567", missed_at=T0 - timedelta(minutes=5), source="pbx")
    claim = await queue.claim("s")
    assert claim is not None
    for _ in range(20):
        renewal = asyncio.create_task(queue.renew(claim))
        await asyncio.sleep(0)
        renewal.cancel()
        await asyncio.gather(renewal, return_exceptions=True)
        assert await queue.renew(claim)
    done = await queue.finish(claim, AttemptResult(Outcome.COMPLETED, target="201"))
    assert done is not None and done.state == "completed"
