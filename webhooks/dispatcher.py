"""Delivering the outbox.

Theory of operation
-------------------
The database is the queue; the dispatcher holds nothing that is not also on
disk. One pass (`run_once`, or one turn of the loop started by `start`):

1. claim: for every configured, enabled endpoint with a free slot, take up to
   `free slots` deliveries that are `pending` with `next_attempt_at <= now`,
   oldest first, and mark them `in_flight` (committed before any POST);
2. send each one as its own task: signed POST, at most
   `concurrency_per_endpoint` in flight per endpoint, so one slow receiver
   fills only its own slots and never starves the others;
3. record the outcome: 2xx → `delivered`; 410 → the endpoint is disabled and
   its deliveries are dead-lettered; anything else (status, refused, timeout)
   → `pending` again at now + next delay (see `webhooks.retry`), or `failed`
   (the dead letter) when the schedule is spent. Nothing is ever dropped.

Between passes the loop sleeps until the earliest due delivery, a `notify()`
(same-process enqueue), a freed slot, or `poll_interval_s` (rows enqueued or
replayed by another process: the CLI, another worker).

Claimed by the caller: a same-process writer may enqueue its deliveries
already `in_flight` in its own transaction (`enqueue_claimed_sync`) and hand
them over once committed (`deliver_claimed`): they are POSTed at once, with
no claim statement between the commit and the request (under load each
statement is a trip to the database thread that waits for a turn of a busy
loop, and a write that may wait for the file's lock). Those the dispatcher
has no free slot for wait in memory for one (still `in_flight` on disk);
those of a disabled endpoint go back to `pending` for a pass to dead-letter;
while it stops it takes none (the next `open()` recovers them).

Restart safety: a process that dies leaves rows `in_flight`; `open()` puts
them back to `pending` (their attempt is not counted, as its outcome is
unknown). The receiver may therefore see an event twice — at-least-once —
always with the same webhook-id. One dispatcher per database file.

Database discipline: the dispatcher never opens the file itself; it is given
`connect`, a coroutine function returning a connection that the application
opened (PRAGMAs set, schema migrated, autocommit mode). Every use of that
connection is serialised by one asyncio lock. Each write is a single
statement (the claim is one `UPDATE … RETURNING`, issued by `_write_returning`,
never by `_read`) or an explicit `BEGIN IMMEDIATE` transaction, so a write
never has to upgrade a read snapshot — the case where SQLite answers
SQLITE_BUSY at once instead of waiting for the application's writer (the
journal) to commit. Every statement is one trip to the connection's thread
(`execute_fetchall`, not a cursor's execute/fetch/close), and the outcomes of
attempts that finish together are written together (`_write_outcome`: one
`executemany` per kind of outcome): each trip waits for a turn of an event
loop that may be busy with hundreds of calls' media, so trips, not SQL, are
what a delivery costs under load.

One writer: given `writer` (the application's group commit, see
voicebot/journal/group_commit.py), the claims and outcomes are written
through it, on the application's writing connection and thread, in its
batches (so are the prune and a 410's two statements); this connection then
only reads. Two connections writing one file under load
wait for each other's lock in SQLite's busy handler, whose sleeps (1, 2, 5,
10, 15, 20... ms) do not end when the lock frees.

Scheduling reads the injected clock's `now()` (wall time: due times must
survive a restart), so tests drive it with a manual clock and `run_once()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import aiosqlite
import structlog

from webhooks.client import AttemptResult, post_signed
from webhooks.model import Clock, DeliveryPolicy, DispatcherMetrics, Endpoint, SystemClock
from webhooks.outbox import Claim, disabled_endpoints
from webhooks.retry import next_delay, parse_retry_after
from webhooks.sqlite_trip import write_in_one_trip

# Opens the application's database: PRAGMAs set, schema migrated, autocommit.
Connect = Callable[[], Awaitable[aiosqlite.Connection]]
# (endpoint, webhook_id, body, webhook-timestamp, timeout_s) -> outcome
Sender = Callable[[Endpoint, str, bytes, int, float], Awaitable[AttemptResult]]
# Runs a function of the plain sqlite3 connection as (part of) a committed
# transaction on the application's one writing connection; its result.
Writer = Callable[[Callable[[sqlite3.Connection], Any]], Awaitable[Any]]

T = TypeVar("T")

GONE_REASON = "410 Gone: the receiver asked us to stop"


@dataclass(slots=True)
class _OutcomeBatch:
    written: asyncio.Future[None]
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)


class Dispatcher:
    def __init__(
        self,
        connect: Connect,
        endpoints: Sequence[Endpoint],
        policy: DeliveryPolicy | None = None,
        clock: Clock | None = None,
        session: aiohttp.ClientSession | None = None,
        *,
        sender: Sender | None = None,
        rng: random.Random | None = None,
        poll_interval_s: float = 1.0,
        prune_interval_s: float = 3600.0,
        logger: Any = None,
        writer: Writer | None = None,
    ) -> None:
        self._connect = connect
        self._writer = writer
        self._endpoints = {endpoint.url: endpoint for endpoint in endpoints}
        self.policy = policy or DeliveryPolicy()
        self.clock: Clock = clock or SystemClock()
        self._session = session
        self._own_session = False
        self._sender = sender
        self._rng = rng or random.Random()
        self.poll_interval_s = poll_interval_s
        self.prune_interval_s = prune_interval_s
        self._log = logger or structlog.get_logger("webhooks")
        self.metrics = DispatcherMetrics()
        self._conn: aiosqlite.Connection | None = None
        self._in_flight = dict.fromkeys(self._endpoints, 0)
        self._claims: dict[int, Claim] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._disabled: dict[str, str] = {}
        self._disabled_checked_at = float("-inf")
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._outcomes: _OutcomeBatch | None = None  # collecting, not yet written
        self._flushing: asyncio.Task[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        # Handed-over claims waiting for a free slot of their endpoint, oldest first.
        self._waiting: dict[str, collections.deque[Claim]] = {}

    @property
    def endpoints(self) -> list[Endpoint]:
        """What `enqueue` should be given, so both sides agree on the URLs."""
        return list(self._endpoints.values())

    @property
    def disabled(self) -> dict[str, str]:
        return dict(self._disabled)

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        """Connect, recover rows a dead process left in flight."""
        if self._conn is not None:
            return
        self._conn = await self._connect()
        recovered = await self._write(
            "UPDATE webhooks_deliveries SET status = 'pending' WHERE status = 'in_flight'"
        )
        if recovered:
            self.metrics.recovered_in_flight += recovered
            self._log.warning(
                "webhook.recovered",
                count=recovered,
                note="they were in flight when the previous process stopped; resending",
            )
        await self._refresh_disabled(force=True)
        await self._warn_orphans()
        if self._session is None and self._sender is None:
            connector = aiohttp.TCPConnector(
                limit=max(100, self.policy.concurrency_per_endpoint * len(self._endpoints)),
                limit_per_host=0,
            )
            self._session = aiohttp.ClientSession(connector=connector)
            self._own_session = True

    async def start(self) -> None:
        """Open and run the delivery loop as a background task."""
        await self.open()
        self._stopping = False
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="webhooks-dispatcher")
        self._log.info(
            "webhook_dispatcher.started",
            endpoints=[url for url in self._endpoints if url not in self._disabled],
            disabled=list(self._disabled),
        )

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop claiming, give in-flight POSTs `grace_s` to finish, then cancel
        the rest and put them back to pending (their attempt is not counted)."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._tasks:
            _, still_running = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in still_running:
                task.cancel()
            if still_running:
                await asyncio.wait(still_running)
        if self._claims and self._conn is not None:
            ids = list(self._claims)
            await self._write(
                "UPDATE webhooks_deliveries SET status = 'pending'"
                f" WHERE status = 'in_flight' AND id IN ({','.join('?' * len(ids))})",
                ids,
            )
            self._claims.clear()
        self._waiting.clear()
        await self.close()

    async def close(self) -> None:
        self._stopping = True
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None
            self._own_session = False
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    async def __aenter__(self) -> Dispatcher:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def notify(self) -> None:
        """Wake the loop: call after committing a transaction that enqueued."""
        self._wake.set()

    def deliver_claimed(self, claims: Sequence[Claim]) -> None:
        """Send deliveries a committed transaction enqueued already claimed
        (`enqueue_claimed_sync`), now, or as soon as their endpoint has a free
        slot (they wait in memory, `in_flight` on disk: no write, no pass).
        Never raises: those of an endpoint disabled or unknown go back to
        `pending` for a pass to dead-letter; while stopped or stopping it
        takes none and leaves them `in_flight` for the next `open()` to
        recover."""
        if self._conn is None or self._stopping:
            return
        back: list[int] = []
        for claim in claims:
            url = claim.endpoint_url
            if url not in self._endpoints or url in self._disabled:
                back.append(claim.delivery_id)
            elif self._in_flight[url] >= self.policy.concurrency_per_endpoint:
                self._claims[claim.delivery_id] = claim  # stop() puts it back to pending
                self._waiting.setdefault(url, collections.deque()).append(claim)
            else:
                self._launch(claim)
        if back:
            self._track(asyncio.create_task(self._release(back)))

    async def _release(self, delivery_ids: list[int]) -> None:
        """Claimed rows this dispatcher did not take: back to `pending`, due now."""
        try:
            await self._write(
                "UPDATE webhooks_deliveries SET status = 'pending' WHERE status = 'in_flight'"
                f" AND id IN ({','.join('?' * len(delivery_ids))})",
                delivery_ids,
            )
        except Exception:
            # Left in flight: the next open() recovers them.
            self._log.exception("webhook.release_failed", count=len(delivery_ids))
        self._wake.set()

    def _launch(self, claim: Claim) -> asyncio.Task[None]:
        self._claims[claim.delivery_id] = claim
        self._in_flight[claim.endpoint_url] += 1
        return self._track(asyncio.create_task(self._deliver(claim)))

    def _track(self, task: asyncio.Task[None]) -> asyncio.Task[None]:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- one pass ---------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what is due now and deliver it, waiting for the outcomes.
        Returns the number of attempts made. The unit of deterministic tests."""
        tasks = await self._claim_and_launch()
        if tasks:
            await asyncio.gather(*tasks)
        return len(tasks)

    async def next_due_at(self, only_free: bool = False) -> float | None:
        """Earliest `next_attempt_at` (Unix seconds) among pending deliveries
        this dispatcher can send; with `only_free`, only endpoints with a free slot."""
        urls = [
            url
            for url in self._endpoints
            if url not in self._disabled
            and (not only_free or self._in_flight[url] < self.policy.concurrency_per_endpoint)
        ]
        if not urls:
            return None
        rows = await self._read(
            "SELECT MIN(next_attempt_at) FROM webhooks_deliveries WHERE status = 'pending'"
            f" AND endpoint_url IN ({','.join('?' * len(urls))})",
            urls,
        )
        return None if not rows or rows[0][0] is None else float(rows[0][0])

    async def prune(self) -> int:
        """Forget delivered rows older than the retention. Dead letters stay."""
        cutoff = self.clock.now().timestamp() - self.policy.retention_s
        removed, _ = await self._atomically(
            (
                "DELETE FROM webhooks_deliveries WHERE status = 'delivered' AND delivered_at < ?",
                (cutoff,),
            ),
            (
                "DELETE FROM webhooks_messages WHERE created_at < ? AND NOT EXISTS"
                " (SELECT 1 FROM webhooks_deliveries d WHERE d.message_id = webhooks_messages.id)",
                (cutoff,),
            ),
        )
        if removed:
            self.metrics.pruned += removed
            self._log.info("webhook.pruned", count=removed, older_than_s=cutoff)
        return removed

    # -- internals --------------------------------------------------------

    @property
    def _db(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise RuntimeError("Dispatcher is not open (await open() or start() first)")
        return self._conn

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """A SELECT; never a statement that writes (see `_write_returning`)."""
        if not sql.lstrip().upper().startswith("SELECT"):
            raise ValueError("_read runs SELECTs only; writes go through _write*")
        async with self._lock:
            return list(await self._db.execute_fetchall(sql, params))

    async def _commit(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` (a function of the plain sqlite3 connection) as one committed
        transaction: through the application's `writer` when given (one writer
        for the file), else on this connection, in one trip to its thread."""
        if self._writer is not None:
            result: T = await self._writer(work)
            return result
        async with self._lock:
            return await write_in_one_trip(self._db, work)

    async def _write_returning(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """One writing statement with RETURNING, its own transaction."""
        return await self._commit(lambda raw: raw.execute(sql, params).fetchall())

    async def _write_outcome(self, sql: str, params: Sequence[Any]) -> None:
        """An attempt's outcome row. Outcomes finishing together are written
        together, one `executemany` trip per statement: under load (a hundred
        deliveries a second, an event loop busy with calls' media) one lock
        hold and one trip each kept the lock so busy that new claims waited
        a second behind them."""
        batch = self._outcomes
        if batch is None:
            batch = self._outcomes = _OutcomeBatch(asyncio.get_running_loop().create_future())
            self._flushing = asyncio.create_task(self._flush_outcomes(batch))
        batch.rows.setdefault(sql, []).append(tuple(params))
        await asyncio.shield(batch.written)

    async def _flush_outcomes(self, batch: _OutcomeBatch) -> None:
        try:
            self._outcomes = None  # from here on, outcomes go in the next batch
            await self._commit(
                lambda raw: [raw.executemany(sql, rows) for sql, rows in batch.rows.items()]
            )
        except asyncio.CancelledError:
            batch.written.cancel()
            raise
        except Exception as error:
            batch.written.set_exception(error)
            batch.written.exception()  # every waiter sees it; none left unretrieved
        else:
            batch.written.set_result(None)

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement, its own transaction. Returns rowcount."""
        return await self._commit(lambda raw: raw.execute(sql, params).rowcount)

    async def _atomically(self, *statements: tuple[str, Sequence[Any]]) -> list[int]:
        """Several writing statements in one transaction; their rowcounts."""
        return await self._commit(
            lambda raw: [raw.execute(sql, params).rowcount for sql, params in statements]
        )

    async def _run(self) -> None:
        last_prune = float("-inf")
        while True:
            self._wake.clear()
            timeout = self.poll_interval_s
            try:
                await self._claim_and_launch()
                if self.clock.monotonic() - last_prune >= self.prune_interval_s:
                    last_prune = self.clock.monotonic()
                    await self.prune()
                due = await self.next_due_at(only_free=True)
                if due is not None:
                    timeout = min(timeout, max(0.0, due - self.clock.now().timestamp()))
            except asyncio.CancelledError:
                raise
            except Exception:
                # A locked or briefly unavailable database must not kill
                # delivery for good: log it and try again after a pause.
                self._log.exception("webhook_dispatcher.pass_failed")
                await asyncio.sleep(min(self.poll_interval_s, 1.0))
                continue
            if timeout > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()

    async def _refresh_disabled(self, force: bool = False) -> None:
        if not force and self.clock.monotonic() - self._disabled_checked_at < self.poll_interval_s:
            return
        self._disabled_checked_at = self.clock.monotonic()
        async with self._lock:
            disabled = await disabled_endpoints(self._db)
        self._disabled = {url: reason for url, reason in disabled.items() if url in self._endpoints}

    async def _warn_orphans(self) -> None:
        urls = list(self._endpoints)
        rows = await self._read(
            "SELECT endpoint_url, COUNT(*) FROM webhooks_deliveries WHERE status = 'pending'"
            f" AND endpoint_url NOT IN ({','.join('?' * len(urls))}) GROUP BY endpoint_url",
            urls,
        )
        for url, count in rows:
            self._log.warning(
                "webhook.orphaned",
                endpoint=url,
                count=count,
                hint="add the endpoint back to settings to deliver them",
            )

    async def _claim_and_launch(self) -> list[asyncio.Task[None]]:
        await self._refresh_disabled()
        now = self.clock.now().timestamp()
        claims: list[Claim] = []
        if self._disabled:
            await self._dead_letter_disabled(now)
        for url in self._endpoints:
            free = self.policy.concurrency_per_endpoint - self._in_flight[url]
            if free <= 0 or url in self._disabled:
                continue
            # One statement claims and reads: atomic without a transaction,
            # and safe against another process claiming the same rows.
            rows = await self._write_returning(
                "UPDATE webhooks_deliveries SET status = 'in_flight'"
                " WHERE id IN (SELECT id FROM webhooks_deliveries"
                "   WHERE status = 'pending' AND endpoint_url = ? AND next_attempt_at <= ?"
                "   ORDER BY next_attempt_at, id LIMIT ?)"
                " RETURNING id, message_id, attempts,"
                " (SELECT body FROM webhooks_messages m WHERE m.id = message_id)",
                (url, now, free),
            )
            claims.extend(Claim(row[0], row[1], url, row[2], row[3].encode()) for row in rows)
        if not claims:
            return []
        return [self._launch(claim) for claim in claims]

    async def _dead_letter_disabled(self, now: float) -> None:
        urls = list(self._disabled)
        count = await self._write(
            "UPDATE webhooks_deliveries"
            " SET status = 'failed', failed_at = ?, next_attempt_at = NULL,"
            "     last_error = 'endpoint disabled: ' || ?"
            f" WHERE status = 'pending' AND endpoint_url IN ({','.join('?' * len(urls))})",
            (now, GONE_REASON, *urls),
        )
        if count:
            self.metrics.dead_lettered += count
            self._log.error(
                "webhook.dead_lettered",
                reason="endpoint_disabled",
                count=count,
                endpoints=urls,
                hint="voicebot webhooks enable URL, then voicebot webhooks replay --failed",
            )

    async def _send(self, endpoint: Endpoint, claim: Claim, timestamp: int) -> AttemptResult:
        if self._sender is not None:
            return await self._sender(
                endpoint, claim.webhook_id, claim.body, timestamp, self.policy.timeout_s
            )
        assert self._session is not None
        return await post_signed(
            self._session,
            endpoint.url,
            endpoint.secrets,
            claim.webhook_id,
            claim.body,
            timestamp=timestamp,
            timeout_s=self.policy.timeout_s,
        )

    async def _deliver(self, claim: Claim) -> None:
        endpoint = self._endpoints[claim.endpoint_url]
        slot_held = True
        try:
            # webhook-timestamp is the time of *this* attempt (receivers reject
            # stale ones); the payload's own timestamp was fixed at enqueue.
            timestamp = int(self.clock.now().timestamp())
            try:
                result = await self._send(endpoint, claim, timestamp)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug in a custom sender is still just a failed attempt
                result = AttemptResult(status=None, error=f"{type(exc).__name__}: {exc}")
            # The slot is a request to the receiver: free once it answered. Held
            # while the outcome waits for the database, it made the next POSTs
            # wait for a write (under load, the busy slots overflowed and saves'
            # webhooks went back to pending for a pass).
            slot_held = False
            self._free_slot(claim)
            try:
                await self._record(claim, result)
            except Exception:
                # The outcome could not be written (database locked past the
                # busy timeout, disk full). Put the row back so it is retried
                # rather than stuck in flight until the next restart.
                self._log.exception(
                    "webhook.outcome_unrecorded",
                    webhook_id=claim.webhook_id,
                    endpoint=claim.endpoint_url,
                )
                with contextlib.suppress(Exception):
                    await self._write(
                        "UPDATE webhooks_deliveries SET status = 'pending' WHERE id = ?",
                        (claim.delivery_id,),
                    )
            self._claims.pop(claim.delivery_id, None)
        finally:
            if slot_held:
                self._free_slot(claim)

    def _free_slot(self, claim: Claim) -> None:
        url = claim.endpoint_url
        self._in_flight[url] -= 1
        self._wake.set()
        waiting = self._waiting.get(url)
        if not waiting or self._stopping:
            return
        if url in self._disabled:  # a 410 meanwhile: a pass dead-letters them
            ids = [c.delivery_id for c in waiting]
            waiting.clear()
            for delivery_id in ids:
                self._claims.pop(delivery_id, None)
            self._track(asyncio.create_task(self._release(ids)))
            return
        self._launch(waiting.popleft())

    async def _record(self, claim: Claim, result: AttemptResult) -> None:
        attempt = claim.attempts + 1
        now_dt = self.clock.now()
        now = now_dt.timestamp()
        self.metrics.attempts += 1
        log = self._log.bind(
            webhook_id=claim.webhook_id,
            endpoint=claim.endpoint_url,
            status=result.status,
            attempt=attempt,
            duration_ms=round(result.duration_s * 1000, 1),
        )
        if result.ok:
            await self._write_outcome(
                "UPDATE webhooks_deliveries SET status = 'delivered', attempts = ?,"
                " last_attempt_at = ?, delivered_at = ?, last_status = ?, last_error = NULL,"
                " next_attempt_at = NULL WHERE id = ?",
                (attempt, now, now, result.status, claim.delivery_id),
            )
            self.metrics.delivered += 1
            log.info("webhook.delivered")
            return

        self.metrics.failed_attempts += 1
        error = result.error or _describe(result)
        if result.status == 410:
            await self._disable(claim, attempt, now, error)
            log.error(
                "webhook_endpoint.disabled",
                hint="voicebot webhooks enable URL, then voicebot webhooks replay --failed",
            )
            return

        retry_after = None
        if result.status in (429, 503):
            retry_after = parse_retry_after(result.headers.get("Retry-After"), now_dt)
        delay = next_delay(self.policy, attempt, self._rng, retry_after)
        if delay is None:
            await self._write_outcome(
                "UPDATE webhooks_deliveries SET status = 'failed', attempts = ?,"
                " last_attempt_at = ?, failed_at = ?, last_status = ?, last_error = ?,"
                " next_attempt_at = NULL WHERE id = ?",
                (attempt, now, now, result.status, error, claim.delivery_id),
            )
            self.metrics.dead_lettered += 1
            log.error(
                "webhook.dead_lettered",
                reason="attempts_exhausted",
                error=error,
                hint=f"voicebot webhooks replay {claim.webhook_id}",
            )
            return
        await self._write_outcome(
            "UPDATE webhooks_deliveries SET status = 'pending', attempts = ?,"
            " last_attempt_at = ?, last_status = ?, last_error = ?, next_attempt_at = ?"
            " WHERE id = ?",
            (attempt, now, result.status, error, now + delay, claim.delivery_id),
        )
        log.warning(
            "webhook.attempt_failed",
            error=error,
            retry_in_s=round(delay, 3),
            retry_after_s=retry_after,
        )

    async def _disable(self, claim: Claim, attempt: int, now: float, error: str) -> None:
        await self._atomically(
            (
                "INSERT INTO webhooks_endpoint_state (url, disabled_at, disabled_reason)"
                " VALUES (?, ?, ?) ON CONFLICT (url) DO UPDATE SET"
                " disabled_at = excluded.disabled_at, disabled_reason = excluded.disabled_reason",
                (claim.endpoint_url, now, GONE_REASON),
            ),
            (
                "UPDATE webhooks_deliveries SET status = 'failed', attempts = ?,"
                " last_attempt_at = ?, failed_at = ?, last_status = 410, last_error = ?,"
                " next_attempt_at = NULL WHERE id = ?",
                (attempt, now, now, error, claim.delivery_id),
            ),
        )
        if claim.endpoint_url not in self._disabled:
            self.metrics.endpoints_disabled += 1
        self.metrics.dead_lettered += 1
        self._disabled[claim.endpoint_url] = GONE_REASON
        # The endpoint's other pending rows become dead letters on the next pass.
        await self._dead_letter_disabled(now)


def _describe(result: AttemptResult) -> str:
    snippet = result.body[:200].decode("utf-8", "replace").strip()
    return f"HTTP {result.status}" + (f": {snippet}" if snippet else "")
