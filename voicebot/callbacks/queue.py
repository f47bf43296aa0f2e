"""The callback queue: jobs, the missed calls they answer, and their attempts,
in the journal's SQLite file (tables of journal migration 3).

Rules it keeps:

- **One open job per client number.** A partial unique index allows one job
  in `queued`/`dialling` per number; a new miss from that number is listed on
  the open job instead (`callback_missed_calls`), and the same missed call
  (a re-sent PBX event) is listed once.
- **A claim is atomic and leased.** `claim()` moves one due job from
  `queued` to `dialling` with a single
  `UPDATE ... WHERE id = (SELECT ... LIMIT 1) AND state = 'queued' RETURNING`,
  the statement that becomes `SELECT ... FOR UPDATE SKIP LOCKED` on
  PostgreSQL; the `state = 'queued'` guard makes a lost race claim nothing.
  The attempt row is written in the same transaction, so a job is never
  dialled without its attempt on record. The claimer renews its lease while
  the call runs; a lease that runs out means the claimer died, and the job
  is given back for a *later* round (the call may have gone out), never at
  once: a restart dials no one twice.
- **Every state change and its webhook commit together** (the outbox).
- A job whose attempt is ringing is not interrupted by a cancellation; the
  cancellation is kept and applied when the attempt ends, unless the attempt
  completed the job.

Times are Unix seconds (REAL), like the call log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import aiosqlite

from voicebot.callbacks.attempt import AttemptResult
from voicebot.callbacks.numbers import ClientNumber, NumberRules, RefusedNumber
from voicebot.callbacks.policy import (
    CLOSED_STATES,
    CallbackPolicy,
    JobState,
    Next,
    client_rung,
)
from voicebot.clock import Clock, SystemClock
from voicebot.cursor import decode_cursor, next_cursor
from voicebot.journal.database import open_database
from voicebot.journal.where import between, seconds
from voicebot.logs import get_logger
from webhooks import Endpoint, enqueue

T = TypeVar("T")
Source = Literal["pbx", "sip", "api", "cli"]

_JOB_COLUMNS = (
    "id",
    "client_number",
    "raw_number",
    "dial",
    "state",
    "reason",
    "source",
    "round",
    "attempts",
    "targets",
    "due_at",
    "not_before",
    "first_missed_at",
    "missed_at",
    "claimed_by",
    "lease_until",
    "cancel_requested",
    "created_at",
    "updated_at",
    "closed_at",
)
JOB_SELECT = ", ".join(_JOB_COLUMNS)


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


#: The job an answered call from `client_number` at `missed_at <= ?` cancels.
_OPEN_JOB = "client_number = ? AND state IN ('queued', 'dialling') AND missed_at <= ?"


@dataclass(frozen=True, slots=True)
class MissedCallRef:
    call_id: int | None
    pbx_call_id: str | None
    missed_at: float


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    id: int
    round: int
    started_at: float
    ended_at: float | None
    targets: tuple[str, ...]
    outcome: str | None
    target: str | None
    sip_status: int | None
    talk_s: float | None
    detail: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "round": self.round,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "targets": list(self.targets),
            "outcome": self.outcome,
            "target": self.target,
            "sip_status": self.sip_status,
            "talk_s": self.talk_s,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class CallbackJob:
    """One client to call back, as stored."""

    id: int
    client_number: str
    raw_number: str | None
    dial: str | None
    state: JobState
    reason: str | None
    source: str
    round: int
    attempts: int
    targets: tuple[str, ...] | None
    due_at: float | None
    not_before: float | None
    first_missed_at: float
    missed_at: float
    claimed_by: str | None
    lease_until: float | None
    cancel_requested: str | None
    created_at: float
    updated_at: float
    closed_at: float | None
    missed_calls: tuple[MissedCallRef, ...] = ()
    attempt_log: tuple[AttemptRecord, ...] = ()

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> CallbackJob:
        data = dict(zip(_JOB_COLUMNS, list(row), strict=True))
        data["targets"] = tuple(json.loads(data["targets"])) if data["targets"] else None
        return cls(**data)

    @property
    def open(self) -> bool:
        return self.state not in CLOSED_STATES

    def event_data(self, outcome: str | None = None) -> dict[str, Any]:
        """`data` of the callback.* webhooks (README: Webhooks)."""
        return {
            "callback_id": self.id,
            "client_number": self.client_number,
            "state": self.state,
            "attempt": self.round,
            "outcome": outcome,
            "reason": self.reason,
            "due_at": iso(self.due_at) if self.state == "queued" else None,
            "missed_call_ids": [m.call_id for m in self.missed_calls if m.call_id is not None],
            "pbx_call_ids": [m.pbx_call_id for m in self.missed_calls if m.pbx_call_id],
            "first_missed_at": iso(self.first_missed_at),
            "missed_at": iso(self.missed_at),
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_number": self.client_number,
            "raw_number": self.raw_number,
            "dial": self.dial,
            "state": self.state,
            "reason": self.reason,
            "source": self.source,
            "attempt": self.round,
            "attempts": self.attempts,
            "due_at": iso(self.due_at),
            "not_before": iso(self.not_before),
            "first_missed_at": iso(self.first_missed_at),
            "missed_at": iso(self.missed_at),
            "created_at": iso(self.created_at),
            "closed_at": iso(self.closed_at),
            "cancel_requested": self.cancel_requested,
            "missed_calls": [
                {"call_id": m.call_id, "pbx_call_id": m.pbx_call_id, "missed_at": iso(m.missed_at)}
                for m in self.missed_calls
            ],
            "attempt_log": [a.as_json() for a in self.attempt_log],
        }


@dataclass(frozen=True, slots=True)
class Intake:
    """What a missed call or a request did to the queue."""

    job: CallbackJob
    #: A new job (False: listed on the client's open job, or already listed).
    created: bool
    #: Why the number is never dialled (the job is `skipped`), else None.
    skipped: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A job this scheduler holds, and the attempt it is about to place."""

    job: CallbackJob
    attempt_id: int
    round: int
    targets: tuple[str, ...]
    claimer: str


@dataclass(frozen=True, slots=True)
class JobFilter:
    state: JobState | None = None
    number: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class QueueError(Exception):
    """An operator's request the queue cannot carry out (the message says why)."""


class CallbackQueue:
    def __init__(
        self,
        conn: aiosqlite.Connection,
        numbers: NumberRules,
        policy: CallbackPolicy,
        *,
        targets: Sequence[str] = (),
        order: str = "manager_first",
        endpoints: Sequence[Endpoint] = (),
        clock: Clock | None = None,
        lease_s: float = 60.0,
        on_webhook: Callable[[], None] | None = None,
    ) -> None:
        self._conn = conn
        self.numbers = numbers
        self.policy = policy
        self.targets = tuple(targets)
        self.order = order
        self._endpoints = list(endpoints)
        self.clock = clock or SystemClock()
        self.lease_s = lease_s
        self._on_webhook = on_webhook
        self._lock = asyncio.Lock()
        #: Set whenever a job may have become due earlier (the scheduler waits on it).
        self.changed = asyncio.Event()
        self._log = get_logger()

    @classmethod
    async def open(
        cls, path: Any, numbers: NumberRules, policy: CallbackPolicy, **kwargs: Any
    ) -> CallbackQueue:
        return cls(await open_database(path), numbers, policy, **kwargs)

    @property
    def connection(self) -> aiosqlite.Connection:
        return self._conn

    async def close(self) -> None:
        await self._conn.close()

    # -- plumbing --------------------------------------------------------------

    async def _transaction(self, work: Callable[[], Awaitable[T]]) -> T:
        async with self._lock:
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                result = await work()
                await self._conn.execute("COMMIT")
            except BaseException:
                # aiosqlite runs statements in order on its thread, so this
                # ROLLBACK follows a BEGIN even when the task was cancelled
                # while the BEGIN was on its way (a cancelled lease renewal):
                # no transaction is left open for the next one to trip on.
                with contextlib.suppress(sqlite3.Error):
                    await asyncio.shield(self._conn.execute("ROLLBACK"))
                raise
        return result

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self._all(sql, params)
        return rows[0] if rows else None

    async def _all(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        # One trip to aiosqlite's thread (execute + fetch + close together).
        bound = params if isinstance(params, dict) else tuple(params)
        return list(await self._conn.execute_fetchall(sql, bound))

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[None]:
        """Reads outside a transaction hold the lock too: a statement still
        open on the connection makes another task's BEGIN fail."""
        async with self._lock:
            yield

    async def _job(self, where: str, params: Sequence[Any]) -> CallbackJob | None:
        row = await self._one(f"SELECT {JOB_SELECT} FROM callback_jobs WHERE {where}", params)
        return CallbackJob.from_row(row) if row is not None else None

    async def _with_missed(self, job: CallbackJob) -> CallbackJob:
        rows = await self._all(
            "SELECT call_id, pbx_call_id, missed_at FROM callback_missed_calls"
            " WHERE job_id = ? ORDER BY missed_at, id",
            (job.id,),
        )
        missed = tuple(MissedCallRef(*row) for row in rows)
        return _replace(job, missed_calls=missed)

    async def _webhook(self, event_type: str, data: dict[str, Any]) -> bool:
        ids = await enqueue(self._conn, event_type, data, self._endpoints, now=self.clock.now())
        return bool(ids)

    def _sent(self, any_webhook: bool) -> None:
        if any_webhook and self._on_webhook is not None:
            self._on_webhook()

    async def _set_state(
        self, job: CallbackJob, nxt: Next, now: float, *, extra: str = ""
    ) -> CallbackJob:
        closed = now if nxt.state in CLOSED_STATES else None
        await self._conn.execute(
            "UPDATE callback_jobs SET state = ?, reason = ?, round = ?, targets = ?, due_at = ?,"
            " claimed_by = NULL, lease_until = NULL, updated_at = ?, closed_at = ?"
            f"{extra} WHERE id = ?",
            (
                nxt.state,
                nxt.reason,
                nxt.round,
                json.dumps(list(nxt.targets)) if nxt.targets else None,
                nxt.due_at.timestamp() if nxt.due_at is not None else None,
                now,
                closed,
                job.id,
            ),
        )
        updated = await self._job("id = ?", (job.id,))
        assert updated is not None
        return await self._with_missed(updated)

    async def _announce(self, job: CallbackJob, outcome: str | None) -> bool:
        event = {
            "queued": "callback.scheduled",
            "completed": "callback.completed",
            "failed": "callback.failed",
            "cancelled": "callback.cancelled",
            "not_needed": "callback.cancelled",
        }.get(job.state)
        if event is None:
            return False
        return await self._webhook(event, job.event_data(outcome))

    # -- intake ----------------------------------------------------------------

    async def request_callback(
        self,
        number: str,
        *,
        source: Source = "api",
        not_before: datetime | None = None,
    ) -> Intake:
        """An explicit request ("call me back"): a job for `number`, or the
        client's open job. A number that may not be dialled is refused with
        `QueueError` (nothing is stored: nobody missed a call)."""
        client = self.numbers.classify(number)
        if isinstance(client, RefusedNumber):
            raise QueueError(
                f"number: {client.raw or number!r} may not be dialled ({client.reason})"
            )
        now = self.clock.now()
        return await self.missed_call(
            number, missed_at=now, source=source, not_before=not_before, announce_missed=False
        )

    async def missed_call(
        self,
        number: str | None,
        *,
        missed_at: datetime,
        source: Source,
        call_id: int | None = None,
        pbx_call_id: str | None = None,
        not_before: datetime | None = None,
        announce_missed: bool = True,
    ) -> Intake:
        """A client's missed call: queue it, list it on the open job, or
        record it as skipped (anonymous, or a number that may not be dialled)."""
        client = self.numbers.classify(number)
        intake = await self._transaction(
            lambda: self._missed(
                client, missed_at, source, call_id, pbx_call_id, not_before, announce_missed
            )
        )
        job = intake.job
        log = self._log.bind(callback_id=job.id, client_number=job.client_number)
        if intake.skipped:
            log.info("callback.skipped", reason=intake.skipped, pbx_call_id=pbx_call_id)
        elif intake.created:
            log.info("callback.scheduled", due_at=iso(job.due_at), source=source, state=job.state)
        else:
            log.info("callback.merged", call_id=call_id, misses=len(job.missed_calls))
        self.changed.set()
        return intake

    async def _missed(
        self,
        client: ClientNumber | RefusedNumber,
        missed_at: datetime,
        source: Source,
        call_id: int | None,
        pbx_call_id: str | None,
        not_before: datetime | None,
        announce_missed: bool,
    ) -> Intake:
        now = self.clock.now().timestamp()
        missed = missed_at.timestamp()
        if call_id is not None:
            listed = await self._one(
                "SELECT job_id FROM callback_missed_calls WHERE call_id = ?", (call_id,)
            )
            if listed is not None:
                job = await self._job("id = ?", (listed[0],))
                assert job is not None
                return Intake(await self._with_missed(job), created=False, skipped=None)
        created = False
        skipped: str | None = None
        if isinstance(client, RefusedNumber):
            skipped = client.reason
            job_id = await self._insert_job(
                client.number or client.raw or "anonymous",
                client.raw,
                None,
                Next("skipped", reason=client.reason),
                source,
                missed,
                None,
                now,
            )
            created = True
        else:
            open_job = await self._job(
                "client_number = ? AND state IN ('queued', 'dialling')", (client.number,)
            )
            if open_job is not None:
                job_id = open_job.id
                await self._conn.execute(
                    "UPDATE callback_jobs SET missed_at = max(missed_at, ?), updated_at = ?"
                    " WHERE id = ?",
                    (missed, now, job_id),
                )
            else:
                nxt = self.policy.first_due(missed_at, _at(now), not_before)
                job_id = await self._insert_job(
                    client.number,
                    client.raw,
                    client.dial(self.numbers.dial_template),
                    nxt,
                    source,
                    missed,
                    not_before.timestamp() if not_before else None,
                    now,
                )
                created = True
        await self._conn.execute(
            "INSERT INTO callback_missed_calls (job_id, call_id, pbx_call_id, missed_at)"
            " VALUES (?, ?, ?, ?)",
            (job_id, call_id, pbx_call_id, missed),
        )
        job = await self._job("id = ?", (job_id,))
        assert job is not None
        job = await self._with_missed(job)
        sent = False
        if announce_missed:
            sent |= await self._webhook(
                "call.missed",
                {
                    "call_id": call_id,
                    "pbx_call_id": pbx_call_id,
                    "client_number": job.client_number,
                    "missed_at": iso(missed),
                    "source": source,
                    "callback_id": job.id,
                    "callback_state": job.state,
                    "skip_reason": skipped,
                },
            )
        if created:
            sent |= await self._announce(job, None)
        self._sent(sent)
        return Intake(job, created=created, skipped=skipped)

    async def _insert_job(
        self,
        number: str,
        raw: str | None,
        dial: str | None,
        nxt: Next,
        source: Source,
        missed: float,
        not_before: float | None,
        now: float,
    ) -> int:
        cursor = await self._conn.execute(
            "INSERT INTO callback_jobs (client_number, raw_number, dial, state, reason, source,"
            " round, due_at, not_before, first_missed_at, missed_at, created_at, updated_at,"
            " closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                number,
                raw,
                dial,
                nxt.state,
                nxt.reason,
                source,
                nxt.round,
                nxt.due_at.timestamp() if nxt.due_at else None,
                not_before,
                missed,
                missed,
                now,
                now,
                now if nxt.state in CLOSED_STATES else None,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def answered_call(
        self, number: str | None, *, at: datetime, reason: str = "answered"
    ) -> CallbackJob | None:
        """The client talked to someone (called again and was answered, or a
        manager called them): the open job missed before `at` is cancelled,
        or, when its attempt is ringing, marked to be cancelled after it."""
        client = self.numbers.classify(number)
        if isinstance(client, RefusedNumber):
            return None
        if not await self._has_open_job(client.number, at.timestamp()):
            # Nearly every answered call has none: one read, not a write
            # transaction that locks the file for three trips to its thread.
            return None
        job = await self._transaction(lambda: self._answered(client.number, at.timestamp(), reason))
        if job is not None:
            log = self._log.bind(callback_id=job.id, client_number=job.client_number)
            if job.state == "cancelled":
                log.info("callback.cancelled", reason=reason)
            else:
                log.info("callback.cancel_deferred", reason=reason, state=job.state)
            self.changed.set()
        return job

    async def _has_open_job(self, number: str, at: float) -> bool:
        async with self._reading():
            row = await self._one(f"SELECT 1 FROM callback_jobs WHERE {_OPEN_JOB}", (number, at))
        return row is not None

    async def _answered(self, number: str, at: float, reason: str) -> CallbackJob | None:
        job = await self._job(_OPEN_JOB, (number, at))
        if job is None:
            return None
        now = self.clock.now().timestamp()
        if job.state == "dialling":
            # Never interrupt a call in progress; the attempt's end applies it.
            await self._conn.execute(
                "UPDATE callback_jobs SET cancel_requested = ?, updated_at = ? WHERE id = ?",
                (reason, now, job.id),
            )
            updated = await self._job("id = ?", (job.id,))
            return updated
        cancelled = await self._set_state(
            job, Next("cancelled", round=job.round, reason=reason), now
        )
        self._sent(await self._announce(cancelled, None))
        return cancelled

    # -- scheduling --------------------------------------------------------------

    async def next_due(self) -> float | None:
        """When the earliest queued job is due (Unix seconds), or None."""
        async with self._reading():
            row = await self._one(
                "SELECT due_at FROM callback_jobs WHERE state = 'queued' ORDER BY due_at LIMIT 1"
            )
        return float(row[0]) if row is not None and row[0] is not None else None

    async def calls_today(self, number: str, at: datetime) -> int:
        """Attempts that rang `number` on the local day of `at` (the daily cap)."""
        async with self._reading():
            return await self._calls_today(number, at)

    async def _calls_today(self, number: str, at: datetime) -> int:
        start, end = self.policy.day_bounds(at)
        row = await self._one(
            "SELECT count(*) FROM callback_attempts WHERE client_number = ?"
            " AND started_at >= ? AND started_at < ? AND client_rung = 1",
            (number, start.timestamp(), end.timestamp()),
        )
        return int(row[0]) if row is not None else 0

    async def claim(self, claimer: str) -> Claim | None:
        """Take the most overdue job for one attempt, or None when none is due."""
        claims = await self.claim_batch(claimer, 1)
        return claims[0] if claims else None

    async def claim_batch(self, claimer: str, limit: int) -> list[Claim]:
        """Take up to `limit` due jobs, most overdue first, in one transaction
        (the scheduler asks for as many as it has free call slots). A job
        that may not be dialled now (closed, daily cap) is put back at its
        next time and the next one is tried."""
        while True:
            claims, postponed = await self._transaction(lambda: self._claim(claimer, limit))
            for job in postponed:
                self._log.info(
                    "callback.postponed",
                    callback_id=job.id,
                    reason=job.reason,
                    due_at=iso(job.due_at),
                )
            for claim in claims:
                self._log.info(
                    "callback.claimed",
                    callback_id=claim.job.id,
                    attempt=claim.round,
                    attempt_id=claim.attempt_id,
                    claimer=claimer,
                )
            if claims or not postponed:
                return claims

    async def _claim(self, claimer: str, limit: int) -> tuple[list[Claim], list[CallbackJob]]:
        now_dt = self.clock.now()
        now = now_dt.timestamp()
        # PostgreSQL: the sub-select gets FOR UPDATE SKIP LOCKED; the outer
        # `state = 'queued'` makes a job another claimer took meanwhile no match.
        # NOT INDEXED (SQLite only): otherwise the planner walks every queued
        # job through the state index instead of looking the few ids up.
        rows = await self._all(
            "UPDATE callback_jobs NOT INDEXED SET state = 'dialling', claimed_by = ?,"
            " lease_until = ?,"
            " attempts = attempts + 1, updated_at = ?"
            " WHERE id IN (SELECT id FROM callback_jobs WHERE state = 'queued'"
            " AND due_at <= ? ORDER BY due_at, id LIMIT ?) AND state = 'queued'"
            f" RETURNING {JOB_SELECT}",
            (claimer, now + self.lease_s, now, now, limit),
        )
        if not rows:
            return [], []
        jobs = sorted((CallbackJob.from_row(row) for row in rows), key=lambda j: (j.due_at, j.id))
        start, end = self.policy.day_bounds(now_dt)
        numbers = sorted({job.client_number for job in jobs})
        counted = await self._all(
            "SELECT client_number, count(*) FROM callback_attempts WHERE client_number IN"
            f" ({', '.join('?' for _ in numbers)}) AND started_at >= ? AND started_at < ?"
            " AND client_rung = 1 GROUP BY client_number",
            (*numbers, start.timestamp(), end.timestamp()),
        )
        today = {row[0]: int(row[1]) for row in counted}
        dial: list[tuple[CallbackJob, tuple[str, ...]]] = []
        postponed: list[CallbackJob] = []
        for job in jobs:
            later = self.policy.before_dial(now_dt, job.round, today.get(job.client_number, 0))
            if later is None:
                dial.append((job, job.targets or self.targets))
                continue
            if later.state == "queued":
                later = Next("queued", later.due_at, job.round, job.targets, later.reason)
            # Not dialled after all: the claim's count is taken back.
            updated = await self._set_state(job, later, now, extra=", attempts = attempts - 1")
            if later.state != "queued":
                self._sent(await self._announce(updated, None))
            postponed.append(updated)
        if not dial:
            return [], postponed
        values: list[Any] = []
        for job, targets in dial:
            values += [
                job.id,
                job.round,
                job.client_number,
                json.dumps(list(targets)),
                claimer,
                now,
            ]
        inserted = await self._all(
            "INSERT INTO callback_attempts (job_id, round, client_number, targets, claimed_by,"
            " started_at) VALUES "
            + ", ".join("(?, ?, ?, ?, ?, ?)" for _ in dial)
            + " RETURNING id, job_id",
            values,
        )
        attempt_ids = {row[1]: row[0] for row in inserted}
        claims = [
            Claim(job, attempt_ids[job.id], job.round, tuple(targets), claimer)
            for job, targets in dial
        ]
        return claims, postponed

    async def renew(self, claim: Claim) -> bool:
        """Extend the claim's lease; False when it is no longer ours."""
        now = self.clock.now().timestamp()

        async def work() -> bool:
            cursor = await self._conn.execute(
                "UPDATE callback_jobs SET lease_until = ? WHERE id = ? AND claimed_by = ?"
                " AND state = 'dialling'",
                (now + self.lease_s, claim.job.id, claim.claimer),
            )
            return cursor.rowcount == 1

        return await self._transaction(work)

    async def finish(self, claim: Claim, result: AttemptResult) -> CallbackJob | None:
        """Record the attempt and move the job on per the policy. Returns the
        job as stored, or None when the claim was lost (its lease ran out and
        another scheduler took the job back)."""
        job = await self._transaction(lambda: self._finish(claim, result))
        log = self._log.bind(callback_id=claim.job.id, attempt=claim.round)
        if job is None:
            log.warning("callback.claim_lost", outcome=result.outcome.value)
            return None
        event = "callback.rescheduled" if job.state == "queued" else f"callback.{job.state}"
        log.info(
            event,
            outcome=result.outcome.value,
            target=result.target,
            sip_status=result.sip_status,
            due_at=iso(job.due_at),
            reason=job.reason,
        )
        self.changed.set()
        return job

    async def _finish(self, claim: Claim, result: AttemptResult) -> CallbackJob | None:
        now_dt = self.clock.now()
        now = now_dt.timestamp()
        job = await self._job(
            "id = ? AND claimed_by = ? AND state = 'dialling'", (claim.job.id, claim.claimer)
        )
        rung = client_rung(result, self.order)
        await self._conn.execute(
            "UPDATE callback_attempts SET ended_at = ?, outcome = ?, target = ?, sip_status = ?,"
            " talk_s = ?, client_rung = ?, detail = ? WHERE id = ?",
            (
                now,
                result.outcome.value,
                result.target,
                result.sip_status,
                result.talk_s,
                int(rung),
                result.detail[:500] or None,
                claim.attempt_id,
            ),
        )
        if job is None:
            return None
        nxt = self.policy.after_attempt(
            result,
            round_=claim.round,
            now=now_dt,
            dialled=claim.targets,
            calls_today=await self._calls_today(job.client_number, now_dt),
        )
        if job.cancel_requested and nxt.state == "queued":
            nxt = Next("cancelled", round=nxt.round, reason=job.cancel_requested)
        updated = await self._set_state(job, nxt, now)
        self._sent(await self._announce(updated, result.outcome.value))
        return updated

    async def recover_expired(self) -> list[CallbackJob]:
        """Jobs whose claimer's lease ran out (it died mid-attempt): their open
        attempt is marked interrupted and the job goes to a later round."""
        return await self._transaction(self._recover)

    async def _recover(self) -> list[CallbackJob]:
        now_dt = self.clock.now()
        now = now_dt.timestamp()
        rows = await self._all(
            f"SELECT {JOB_SELECT} FROM callback_jobs WHERE state = 'dialling' AND lease_until < ?",
            (now,),
        )
        expired = [CallbackJob.from_row(row) for row in rows]
        recovered: list[CallbackJob] = []
        sent = False
        for job in expired:
            await self._conn.execute(
                "UPDATE callback_attempts SET ended_at = ?, outcome = 'interrupted',"
                " detail = 'the scheduler holding the claim stopped' WHERE job_id = ?"
                " AND ended_at IS NULL",
                (now, job.id),
            )
            nxt = self.policy.after_interruption(job.round, now_dt)
            if job.cancel_requested and nxt.state == "queued":
                nxt = Next("cancelled", round=nxt.round, reason=job.cancel_requested)
            updated = await self._set_state(job, nxt, now)
            sent |= await self._announce(updated, "interrupted")
            self._log.warning(
                "callback.recovered",
                callback_id=job.id,
                claimer=job.claimed_by,
                state=updated.state,
                due_at=iso(updated.due_at),
            )
            recovered.append(updated)
        self._sent(sent)
        return recovered

    # -- operator ------------------------------------------------------------------

    async def cancel(self, job_id: int, reason: str = "operator") -> CallbackJob:
        job = await self._transaction(lambda: self._cancel(job_id, reason))
        self._log.info("callback.cancelled", callback_id=job_id, reason=reason, state=job.state)
        return job

    async def _cancel(self, job_id: int, reason: str) -> CallbackJob:
        job = await self._job("id = ?", (job_id,))
        if job is None:
            raise QueueError(f"id: no callback {job_id}")
        if not job.open:
            raise QueueError(f"id: callback {job_id} is already {job.state}")
        if job.state == "dialling":
            await self._conn.execute(
                "UPDATE callback_jobs SET cancel_requested = ? WHERE id = ?", (reason, job_id)
            )
            updated = await self._job("id = ?", (job_id,))
            assert updated is not None
            return updated
        now = self.clock.now().timestamp()
        cancelled = await self._set_state(
            job, Next("cancelled", round=job.round, reason=reason), now
        )
        self._sent(await self._announce(cancelled, None))
        return cancelled

    async def retry(self, job_id: int) -> CallbackJob:
        """Queue a job again, due now (working hours still apply at the claim).
        A closed job gets one more attempt; a skipped one cannot be dialled."""
        job = await self._transaction(lambda: self._retry(job_id))
        self._log.info("callback.retried", callback_id=job_id, attempt=job.round)
        self.changed.set()
        return job

    async def _retry(self, job_id: int) -> CallbackJob:
        job = await self._job("id = ?", (job_id,))
        if job is None:
            raise QueueError(f"id: no callback {job_id}")
        if job.state == "skipped":
            raise QueueError(
                f"id: callback {job_id} was skipped ({job.reason}); its number may not be dialled"
            )
        if job.state == "dialling":
            raise QueueError(f"id: callback {job_id} is being dialled now")
        if not job.open:
            other = await self._job(
                "client_number = ? AND state IN ('queued', 'dialling')", (job.client_number,)
            )
            if other is not None:
                raise QueueError(f"id: callback {other.id} is already open for {job.client_number}")
        now_dt = self.clock.now()
        now = now_dt.timestamp()
        # A closed job that was dialled gets one more round, even past
        # max_attempts: the operator asked for it.
        round_ = job.round + 1 if not job.open and job.attempts else job.round
        updated = await self._set_state(
            job,
            Next("queued", due_at=now_dt, round=round_, reason="retry"),
            now,
            extra=", cancel_requested = NULL",
        )
        self._sent(await self._announce(updated, None))
        return updated

    # -- reading ---------------------------------------------------------------------

    async def get(self, job_id: int) -> CallbackJob | None:
        async with self._reading():
            job = await self._job("id = ?", (job_id,))
            return await self._complete(job) if job is not None else None

    async def _complete(self, job: CallbackJob) -> CallbackJob:
        """The job with its missed calls and its attempts."""
        job = await self._with_missed(job)
        rows = await self._all(
            "SELECT id, round, started_at, ended_at, targets, outcome, target, sip_status,"
            " talk_s, detail FROM callback_attempts WHERE job_id = ? ORDER BY id",
            (job.id,),
        )
        attempts = tuple(
            AttemptRecord(
                r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), r[5], r[6], r[7], r[8], r[9]
            )
            for r in rows
        )
        return _replace(job, attempt_log=attempts)

    async def list(
        self, filters: JobFilter, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[CallbackJob], str | None]:
        """Newest first; the cursor continues after the previous page's last
        job (created_at, id never change, so paging neither skips nor repeats)."""
        clauses, params = between("created_at", seconds(filters.since), seconds(filters.until))
        if filters.state is not None:
            clauses.append("state = :state")
            params["state"] = filters.state
        if filters.number is not None:
            client = self.numbers.classify(filters.number)
            number = client.number
            clauses.append("client_number IN (:number, :raw)")
            params["number"] = number or filters.number
            params["raw"] = filters.number.strip()
        if cursor is not None:
            created_at, job_id = decode_cursor(cursor)
            clauses.append("(created_at, id) < (:cursor_at, :cursor_id)")
            params |= {"cursor_at": created_at, "cursor_id": job_id}
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params["limit"] = limit + 1
        async with self._reading():
            rows = await self._all(
                f"SELECT {JOB_SELECT} FROM callback_jobs{where}"
                " ORDER BY created_at DESC, id DESC LIMIT :limit",
                params,
            )
            jobs = [CallbackJob.from_row(row) for row in rows]
            page = [await self._complete(job) for job in jobs[:limit]]
        return page, next_cursor(jobs, limit, lambda job: (job.created_at, job.id))

    async def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(jobs by state, attempts by outcome) as stored, for /metrics."""
        async with self._reading():
            states = {
                row[0]: int(row[1])
                for row in await self._all(
                    "SELECT state, count(*) FROM callback_jobs GROUP BY state"
                )
            }
            outcomes = {
                row[0]: int(row[1])
                for row in await self._all(
                    "SELECT coalesce(outcome, 'in_progress'), count(*) FROM callback_attempts"
                    " GROUP BY outcome"
                )
            }
        return states, outcomes


def new_claimer() -> str:
    """This scheduler's name on its claims (one per process start)."""
    return f"sched_{uuid.uuid4().hex[:12]}"


def _replace(job: CallbackJob, **changes: Any) -> CallbackJob:
    return replace(job, **changes)
