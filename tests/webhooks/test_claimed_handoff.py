"""A confirmed save's webhook claimed in the save's own transaction and handed to
the running dispatcher on commit (webhooks/outbox.py `enqueue_claimed_sync`,
`Dispatcher.deliver_claimed`, `Journal.deliver_with`): the POST leaves with no
pass of the dispatcher's, and nothing is lost when the dispatcher cannot take
it. Real SQLite on disk, real aiohttp receiver on loopback."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from webhooks_testkit import SECRET, Receiver, ScriptedSender

from tests.journal.test_journal import confirmed, start
from tests.polling import until
from voicebot.journal import Journal
from voicebot.journal.database import connector
from webhooks import (
    AttemptResult,
    DeliveryPolicy,
    Dispatcher,
    Endpoint,
    SystemClock,
    enqueue_claimed_sync,
)

FAST = DeliveryPolicy(timeout_s=2, schedule=(0, 0.05, 0.05), jitter=0.1)
#: Longer than any test: a delivery that arrives came from the hand-over, not a poll.
NO_POLL_S = 600.0


@asynccontextmanager
async def handing_over(
    db: Path, endpoint: Endpoint, policy: DeliveryPolicy = FAST, **dispatcher: Any
) -> AsyncIterator[tuple[Journal, Dispatcher]]:
    """A journal whose saves hand their claimed webhooks to a running dispatcher
    (as the app wires them); both stopped and closed at the end."""
    journal = await Journal.open(db, [endpoint])
    running = Dispatcher(connector(db), [endpoint], policy, **dispatcher)
    await running.start()
    journal.deliver_with(running.deliver_claimed)
    try:
        yield journal, running
    finally:
        await running.stop()
        await journal.close()


def statuses(db: Path) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT status FROM webhooks_deliveries ORDER BY id")]


async def test_a_saved_webhook_is_posted_without_a_dispatcher_pass(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = tmp_path / "j.db"
    endpoint = Endpoint(receiver.url, [SECRET])
    async with handing_over(db, endpoint, poll_interval_s=NO_POLL_S) as (journal, _):
        [webhook_id] = await journal.finish_call(start(), confirmed())
        # Committed already claimed: no pass may take it a second time meanwhile.
        assert statuses(db) in (["in_flight"], ["delivered"])
        await receiver.wait_for(1, timeout=5)  # no notify(), no poll: the hand-over sent it
        assert receiver.ids == [webhook_id]
        await until(lambda: statuses(db) == ["delivered"], timeout=5)


async def test_claims_beyond_the_free_slots_wait_for_one_in_memory(
    tmp_path: Path, sender: ScriptedSender
) -> None:
    """One slot: the first save's POST takes it, the second save's claim waits
    (still `in_flight`, no write, no pass) and is sent as the slot frees."""
    db = tmp_path / "j.db"
    endpoint = Endpoint("http://crm.test/hook", [SECRET])
    policy = DeliveryPolicy(timeout_s=2, schedule=(0, 0.05), concurrency_per_endpoint=1)
    gate = sender.gates[endpoint.url] = asyncio.Event()
    sender.answer(endpoint.url, AttemptResult(status=200))
    wiring = handing_over(db, endpoint, policy, sender=sender, poll_interval_s=NO_POLL_S)
    async with wiring as (journal, _):
        first = await journal.finish_call(start("call_1"), confirmed())
        second = await journal.finish_call(start("call_2"), confirmed())
        await until(lambda: len(sender.sent) == 1, timeout=5)
        assert [s.webhook_id for s in sender.sent] == first
        assert statuses(db) == ["in_flight", "in_flight"]
        gate.set()
        await until(lambda: statuses(db) == ["delivered", "delivered"], timeout=5)
        assert [s.webhook_id for s in sender.sent] == first + second
        assert sender.max_in_flight[endpoint.url] == 1


async def test_a_claim_waiting_for_a_slot_goes_back_to_pending_at_stop(
    tmp_path: Path, sender: ScriptedSender
) -> None:
    db = tmp_path / "j.db"
    endpoint = Endpoint("http://crm.test/hook", [SECRET])
    policy = DeliveryPolicy(timeout_s=2, schedule=(0, 0.05), concurrency_per_endpoint=1)
    journal = await Journal.open(db, [endpoint])
    dispatcher = Dispatcher(
        connector(db), [endpoint], policy, sender=sender, poll_interval_s=NO_POLL_S
    )
    sender.gates[endpoint.url] = asyncio.Event()  # the first POST never answers
    await dispatcher.start()
    journal.deliver_with(dispatcher.deliver_claimed)
    try:
        await journal.finish_call(start("call_1"), confirmed())
        await journal.finish_call(start("call_2"), confirmed())
        await until(lambda: len(sender.sent) == 1, timeout=5)
        journal.deliver_with(None)
        await dispatcher.stop(grace_s=0.1)
        assert statuses(db) == ["pending", "pending"]  # the next start sends both
        assert len(sender.sent) == 1
    finally:
        await journal.close()


async def test_a_claim_no_dispatcher_took_is_sent_after_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Saved while the dispatcher was stopping: the row stays `in_flight` (the
    process may be about to die), and the next start recovers and sends it."""
    db = tmp_path / "j.db"
    endpoint = Endpoint(receiver.url, [SECRET])
    journal = await Journal.open(db, [endpoint])
    stopped = Dispatcher(connector(db), [endpoint], FAST, poll_interval_s=NO_POLL_S)
    await stopped.start()
    journal.deliver_with(stopped.deliver_claimed)
    await stopped.stop()
    [webhook_id] = await journal.finish_call(start(), confirmed())
    assert statuses(db) == ["in_flight"] and receiver.received == []
    await journal.close()

    restarted = Dispatcher(connector(db), [endpoint], FAST, poll_interval_s=NO_POLL_S)
    await restarted.start()  # open() puts it back to pending, the first pass sends it
    try:
        await receiver.wait_for(1, timeout=5)
        assert receiver.ids == [webhook_id]
        await until(lambda: statuses(db) == ["delivered"], timeout=5)
    finally:
        await restarted.stop()


async def test_without_a_dispatcher_saves_enqueue_pending(tmp_path: Path) -> None:
    """Start-up's spool replay and shutdown save before / after the dispatcher runs."""
    db = tmp_path / "j.db"
    journal = await Journal.open(db, [Endpoint("http://crm.test/hook", [SECRET])])
    journal.deliver_with(lambda claims: None)
    journal.deliver_with(None)
    assert not journal.delivers
    await journal.finish_call(start(), confirmed())
    await journal.close()
    assert statuses(db) == ["pending"]


async def test_given_the_journals_writer_the_dispatcher_writes_nothing_on_its_own_connection(
    tmp_path: Path, sender: ScriptedSender
) -> None:
    """One writer for the file: the dispatcher's claims and outcomes go in the
    journal's group-commit batches; its own connection only reads."""
    db = tmp_path / "j.db"
    endpoint = Endpoint("http://crm.test/hook", [SECRET])
    journal = await Journal.open(db, [endpoint])
    writes = journal.group_commit
    dispatcher = Dispatcher(
        connector(db),
        [endpoint],
        FAST,
        sender=sender,
        poll_interval_s=0.05,
        writer=writes.writer("webhook", 5.0),
    )
    sender.answer(endpoint.url, AttemptResult(status=500), AttemptResult(status=200))
    await dispatcher.open()
    own: list[str] = []
    assert dispatcher._conn is not None
    await dispatcher._conn.set_trace_callback(own.append)
    await dispatcher.start()
    journal.deliver_with(dispatcher.deliver_claimed)
    try:
        before = writes.writes
        [webhook_id] = await journal.finish_call(start(), confirmed())
        # handed over, failed (500), written back pending, claimed by a pass, sent, delivered
        await until(lambda: statuses(db) == ["delivered"], timeout=5)
        assert [s.webhook_id for s in sender.sent] == [webhook_id, webhook_id]
        assert writes.writes >= before + 4  # the save, two outcomes, the pass's claim
        assert own and not [
            sql for sql in own if sql.lstrip().split()[0].upper() in ("INSERT", "UPDATE", "DELETE")
        ]
    finally:
        await dispatcher.stop()
        await journal.close()


async def test_a_slot_frees_when_the_receiver_answers_not_when_the_outcome_is_written(
    tmp_path: Path, sender: ScriptedSender
) -> None:
    """`concurrency_per_endpoint` bounds requests to the receiver: a POST that
    has its answer frees its slot while its outcome still waits for a busy
    database, so the next claimed delivery is sent meanwhile (held, the slots
    filled under load and saves' webhooks fell back to a pass)."""
    db = tmp_path / "j.db"
    endpoint = Endpoint("http://crm.test/hook", [SECRET])
    journal = await Journal.open(db, [endpoint])
    await journal.close()  # created and migrated
    policy = DeliveryPolicy(timeout_s=2, schedule=(0, 0.05), concurrency_per_endpoint=1)
    dispatcher = Dispatcher(connector(db), [endpoint], policy, sender=sender)
    await dispatcher.open()  # before the claims: open() recovers rows left in flight
    with sqlite3.connect(db, isolation_level=None) as raw:
        raw.execute("BEGIN IMMEDIATE")
        claims = [
            claim
            for i in range(2)
            for claim in enqueue_claimed_sync(
                raw, "call.categorized", {"i": i}, [endpoint], now=SystemClock().now()
            )
        ]
        raw.execute("COMMIT")
    blocker = sqlite3.connect(db, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # every write waits, as behind a busy writer
        dispatcher.deliver_claimed(claims[:1])
        await until(lambda: len(sender.sent) == 1, timeout=2)
        dispatcher.deliver_claimed(claims[1:])
        await until(lambda: len(sender.sent) == 2, timeout=2, what="the second POST")
        assert sender.max_in_flight[endpoint.url] == 1
        assert statuses(db) == ["in_flight", "in_flight"]  # outcomes still waiting
        blocker.execute("ROLLBACK")
        await until(lambda: statuses(db) == ["delivered", "delivered"], timeout=5)
    finally:
        blocker.close()
        await dispatcher.stop()
