"""The callback scheduler: claims due jobs, hands each to the dialler, and
records what came of it.

Theory of operation: one loop. It gives back jobs whose claimer died
(expired leases), claims due jobs while fewer than `max_concurrent_calls`
attempts run, starts one task per attempt, then sleeps until the earliest
due job, a change in the queue (a new job, a finished attempt: the queue's
`changed` event), or the lease check, whichever comes first. Each attempt
task renews its claim's lease while the dialler works, so a long call is not
taken back, and a stopped process's claims run out on their own.

The dialler is the SIP edge (`voicebot.callbacks.dialler`); it is passed in,
so tests can script one. A dialler that raises is an attempt that `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

from voicebot.callbacks.attempt import AttemptRequest, AttemptResult, Dialler, Outcome
from voicebot.callbacks.queue import CallbackQueue, Claim, new_claimer
from voicebot.logs import get_logger

#: However far the next job is, look again this often (another process may
#: have queued one, or a claim may have expired).
MAX_SLEEP_S = 30.0


class CallbackScheduler:
    def __init__(
        self,
        queue: CallbackQueue,
        dialler: Dialler,
        *,
        max_concurrent_calls: int = 2,
        order: str = "manager_first",
        transfer: str = "refer",
        ring_strategy: str = "sequential",
        claimer: str | None = None,
    ) -> None:
        self.queue = queue
        self.dialler = dialler
        self.max_concurrent_calls = max_concurrent_calls
        self.order = order
        self.transfer = transfer
        self.ring_strategy = ring_strategy
        self.claimer = claimer or new_claimer()
        self._task: asyncio.Task[None] | None = None
        self._attempts: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._log = get_logger(claimer=self.claimer)

    @property
    def active(self) -> int:
        return len(self._attempts)

    def wake(self) -> None:
        """Look at the queue now (a job was added, or a test moved the clock)."""
        self.queue.changed.set()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="callback-scheduler")
            self._log.info("callback.scheduler_started", max_concurrent=self.max_concurrent_calls)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop claiming; attempts in progress get `grace_s`, then are ended
        (recorded `failed`, detail `shutdown`, and retried later)."""
        self._stopping = True
        if self._task is not None:
            self.queue.changed.set()
            self._task.cancel()
            # asyncio.wait, not `await task`: on Python 3.11 a cancellation
            # that meets a finishing wait_for can be swallowed; the flag ends
            # the loop then, and this never waits on it forever.
            await asyncio.wait({self._task}, timeout=grace_s + 5)
            self._task = None
        if self._attempts:
            _, running = await asyncio.wait(set(self._attempts), timeout=grace_s)
            for task in running:
                task.cancel()
            if running:
                await asyncio.wait(running, timeout=grace_s + 5)

    async def _run(self) -> None:
        while not self._stopping:
            self.queue.changed.clear()
            try:
                await self.queue.recover_expired()
                while self.active < self.max_concurrent_calls:
                    claims = await self.queue.claim_batch(
                        self.claimer, self.max_concurrent_calls - self.active
                    )
                    if not claims:
                        break
                    for claim in claims:
                        task = asyncio.create_task(
                            self._attempt(claim), name=f"callback-{claim.job.id}-{claim.round}"
                        )
                        self._attempts.add(task)
                        task.add_done_callback(self._attempt_done)
                timeout = await self._sleep_s()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # The database said no (locked past its timeout, disk full):
                # keep the loop, look again shortly.
                self._log.error("callback.scheduler_failed", error=repr(error))
                timeout = 1.0
            # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancel
            # that lands as the event is set, and stop() then waited for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.queue.changed.wait()

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        self._attempts.discard(task)
        self.queue.changed.set()

    async def _sleep_s(self) -> float:
        limit = min(MAX_SLEEP_S, self.queue.lease_s / 2)
        if self.active >= self.max_concurrent_calls:
            return limit
        due = await self.queue.next_due()
        if due is None:
            return limit
        return max(0.0, min(limit, due - self.queue.clock.now().timestamp()))

    def request(self, claim: Claim) -> AttemptRequest:
        job = claim.job
        return AttemptRequest(
            job_id=job.id,
            attempt=claim.round,
            client_number=job.client_number,
            client_dial=job.dial or job.client_number,
            missed_at=datetime.fromtimestamp(job.missed_at, UTC),
            targets=claim.targets,
            order=self.order,
            transfer=self.transfer,
            ring_strategy=self.ring_strategy,
        )

    async def _attempt(self, claim: Claim) -> None:
        log = self._log.bind(callback_id=claim.job.id, attempt=claim.round)
        heartbeat = asyncio.create_task(self._keep_lease(claim))
        result: AttemptResult
        try:
            result = await self.dialler.attempt(self.request(claim))
        except asyncio.CancelledError:
            result = AttemptResult(Outcome.FAILED, detail="shutdown")
            heartbeat.cancel()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.queue.finish(claim, result))
            raise
        except Exception as error:
            log.error("callback.dialler_failed", error=repr(error))
            result = AttemptResult(Outcome.FAILED, detail=f"dialler error: {error!r}"[:200])
        finally:
            heartbeat.cancel()
        try:
            await self.queue.finish(claim, result)
        except Exception as error:
            # The lease runs out and the job is recovered for a later round.
            log.error("callback.record_failed", error=repr(error), outcome=result.outcome.value)

    async def _keep_lease(self, claim: Claim) -> None:
        while True:
            await asyncio.sleep(self.queue.lease_s / 3)
            try:
                if not await self.queue.renew(claim):
                    self._log.warning("callback.lease_lost", callback_id=claim.job.id)
                    return
            except Exception as error:
                self._log.error("callback.lease_renew_failed", error=repr(error))
