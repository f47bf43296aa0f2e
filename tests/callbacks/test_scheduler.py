"""The scheduler over a real SQLite queue with a scripted dialler (the SIP
dialler's own tests drive SIPp): what it asks the dialler, what it records,
how many calls it places at once, and that a restart dials no one twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from tests.callbacks.callbacks_testkit import T0, QueueFactory, ScriptedDialler
from tests.clock import ManualClock
from tests.polling import until
from voicebot.callbacks.attempt import AttemptResult, Outcome
from voicebot.callbacks.queue import CallbackQueue, JobFilter
from voicebot.callbacks.scheduler import CallbackScheduler


async def state_of(queue: CallbackQueue, job_id: int) -> str | None:
    job = await queue.get(job_id)
    return job.state if job else None


async def test_due_job_is_dialled_and_completed(
    make_queue: QueueFactory, clock: ManualClock
) -> None:
    queue = await make_queue(dial_template="9{national}", first_delay_s=0)
    dialler = ScriptedDialler(
        AttemptResult(Outcome.COMPLETED, target="202", rang=(("201", 480), ("202", None)))
    )
    scheduler = CallbackScheduler(
        queue, dialler, order="manager_first", transfer="bridge", ring_strategy="all"
    )
    await scheduler.start()
    try:
        intake = await queue.missed_call("0441234567", missed_at=T0, source="pbx", call_id=3)
        await until(lambda: _is(queue, intake.job.id, "completed"))
    finally:
        await scheduler.stop()
    [request] = dialler.requests
    assert request.job_id == intake.job.id and request.attempt == 1
    assert (request.client_number, request.client_dial) == ("+380441234567", "90441234567")
    assert request.targets == ("201", "202") and request.missed_at == T0
    assert (request.transfer, request.ring_strategy) == ("bridge", "all")
    job = await queue.get(intake.job.id)
    assert job is not None
    [attempt] = job.attempt_log
    assert (attempt.outcome, attempt.target) == ("completed", "202")
    async with queue.connection.execute(
        "SELECT body FROM webhooks_messages WHERE event_type = 'callback.completed'"
    ) as cursor:
        assert len(await cursor.fetchall()) == 1


async def _is(queue: CallbackQueue, job_id: int, state: str) -> bool:
    return await state_of(queue, job_id) == state


async def test_outcomes_drive_retries_until_max_attempts(
    make_queue: QueueFactory, clock: ManualClock
) -> None:
    queue = await make_queue(first_delay_s=0, max_attempts=3, retry_interval_s=300)
    dialler = ScriptedDialler(
        AttemptResult(Outcome.CLIENT_BUSY, target="201", sip_status=486),
        AttemptResult(Outcome.MANAGER_LATER, target="201"),
        AttemptResult(Outcome.CLIENT_NO_ANSWER, target="201", sip_status=480),
    )
    scheduler = CallbackScheduler(queue, dialler)
    await scheduler.start()
    try:
        intake = await queue.missed_call("0441234567", missed_at=T0, source="pbx")
        for attempts in (1, 2):
            await until(lambda n=attempts: _attempts_done(queue, intake.job.id, n))
            assert await state_of(queue, intake.job.id) == "queued"
            clock.advance(299)
            scheduler.wake()
            await asyncio.sleep(0.05)
            assert len(dialler.requests) == attempts  # not due yet
            clock.advance(1)
            scheduler.wake()
        await until(lambda: _is(queue, intake.job.id, "failed"))
    finally:
        await scheduler.stop()
    assert [r.attempt for r in dialler.requests] == [1, 2, 3]
    job = await queue.get(intake.job.id)
    assert job is not None and job.reason == "max_attempts"
    assert [(a.outcome, a.sip_status) for a in job.attempt_log] == [
        ("client_busy", 486),
        ("manager_later", None),
        ("client_no_answer", 480),
    ]


async def _attempts_done(queue: CallbackQueue, job_id: int, count: int) -> bool:
    job = await queue.get(job_id)
    return job is not None and sum(a.outcome is not None for a in job.attempt_log) == count


async def test_max_concurrent_calls_is_respected(make_queue: QueueFactory) -> None:
    queue = await make_queue(first_delay_s=0)
    dialler = ScriptedDialler(hold=True)
    scheduler = CallbackScheduler(queue, dialler, max_concurrent_calls=2)
    await scheduler.start()
    try:
        for n in range(5):
            await queue.missed_call(f"04400000{n:02d}", missed_at=T0, source="pbx")
        await until(lambda: _claimed(queue, 2))
        await asyncio.sleep(0.1)
        assert dialler.active == 2 and len(dialler.requests) == 2
        dialler.release.set()
        await until(lambda: _count(queue, "completed", 5))
    finally:
        await scheduler.stop()
    assert dialler.peak == 2


async def _claimed(queue: CallbackQueue, count: int) -> bool:
    return await _count(queue, "dialling", count)


async def _count(queue: CallbackQueue, state: str, count: int) -> bool:
    jobs, _ = await queue.list(JobFilter(state=state), limit=100)  # type: ignore[arg-type]
    return len(jobs) == count


async def test_restart_mid_attempt_dials_no_one_twice(
    make_queue: QueueFactory, clock: ManualClock
) -> None:
    """The first process dies while its attempt rings (no finish, no stop);
    the restarted one neither redials at once nor before the retry interval."""
    first_queue = await make_queue(first_delay_s=0, lease_s=30, retry_interval_s=600)
    first = ScriptedDialler(hold=True)
    crashed = CallbackScheduler(first_queue, first)
    await crashed.start()
    intake = await first_queue.missed_call("0441234567", missed_at=T0, source="pbx")
    await asyncio.wait_for(first.called.wait(), 5)
    # A crash: the loop and its attempt vanish without recording anything.
    assert crashed._task is not None
    crashed._task.cancel()
    orphans = list(crashed._attempts)
    for task in orphans:
        task.remove_done_callback(crashed._attempt_done)
    await first_queue.close()

    second_queue = await make_queue(first_delay_s=0, lease_s=30, retry_interval_s=600)
    second = ScriptedDialler()
    restarted = CallbackScheduler(second_queue, second)
    await restarted.start()
    try:
        await asyncio.sleep(0.1)
        assert second.requests == []  # still leased to the dead process
        clock.advance(31)
        restarted.wake()
        await until(lambda: _reason(second_queue, intake.job.id, "interrupted"))
        assert second.requests == []  # recovered for later, not redialled
        clock.advance(600)
        restarted.wake()
        await until(lambda: _is(second_queue, intake.job.id, "completed"))
    finally:
        await restarted.stop()
        for task in orphans:  # the dead process's call, gone with it
            task.cancel()
        await asyncio.gather(*orphans, return_exceptions=True)
    assert [r.attempt for r in second.requests] == [2]
    assert len(first.requests) == 1


async def _reason(queue: CallbackQueue, job_id: int, reason: str) -> bool:
    job = await queue.get(job_id)
    return job is not None and job.reason == reason


async def test_a_dialler_that_raises_is_a_failed_attempt(make_queue: QueueFactory) -> None:
    queue = await make_queue(first_delay_s=0)

    class Broken:
        async def attempt(self, request: object) -> AttemptResult:
            raise RuntimeError("socket gone")

    scheduler = CallbackScheduler(queue, Broken())
    await scheduler.start()
    try:
        intake = await queue.missed_call("0441234567", missed_at=T0, source="pbx")
        await until(lambda: _attempts_done(queue, intake.job.id, 1))
    finally:
        await scheduler.stop()
    job = await queue.get(intake.job.id)
    assert job is not None and job.state == "queued" and job.round == 2
    assert job.attempt_log[0].outcome == "failed"
    assert job.due_at == (T0 + timedelta(seconds=600)).timestamp()
