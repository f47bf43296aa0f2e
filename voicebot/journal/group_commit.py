"""Group commit: the journal's writes from every call, many per transaction, one trip each.

Theory of operation
-------------------
A write is a function of the plain sqlite3 connection (`Work`), run on the
aiosqlite connection's own thread. `GroupCommit.write` queues it and waits;
one writer task takes everything queued, runs it as ONE transaction in ONE
trip to the thread (`write_in_one_trip`), each write inside its own
SAVEPOINT when there are several (a batch of one needs none), and resolves
each caller's future once COMMIT has returned. Writes
that arrive meanwhile make the next batch.

Why: at 500 calls the event loop is busy with media, so every trip to the
database thread and back waits for a turn of a busy loop (5-20 ms). With one
trip per save and the saves serialised, a hundred confirmations a second
saturated the journal and key -> webhook took 0.3-0.8 s; with nine trips per
save (the first version), seconds. A batch costs one trip however many calls
it carries.

What each caller still gets, as with a transaction of its own:
- its write is durable when `write` returns (committed; the caller may say
  "saved");
- a write that raises a bug (no such table, a value JSON cannot encode) is
  rolled back to its savepoint and raises to its caller alone; the others in
  the batch commit;
- "not now" errors (locked by another process, read-only, disk full: see
  `is_unavailable`) roll the whole batch back and it is retried with backoff,
  each write until its own deadline, after which it raises
  `JournalUnavailable` (its caller spools it: see spool.py). SQLite's
  busy_timeout bounds one attempt, so a locked file never holds a call past
  its deadline by more than that.
- a caller cancelled before its batch left is dropped from it; one cancelled
  after may still commit (every journal write is idempotent);
- `after_commit`, when given, is called with the write's result by the writer
  itself once COMMIT has returned, whether or not the caller still waits:
  what must follow a commit (handing claimed webhook deliveries to the
  dispatcher) cannot be lost with a cancelled caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiosqlite

from voicebot.journal.database import describe_sqlite_error, is_unavailable
from webhooks.sqlite_trip import write_in_one_trip

Work = Callable[[sqlite3.Connection], Any]

FIRST_RETRY_S = 0.05
MAX_RETRY_S = 1.0


class JournalUnavailable(Exception):
    """A write did not commit before its deadline (locked, read-only, disk full)."""


@dataclass(slots=True, eq=False)
class _Write:
    what: str  # "start" | "finish": named in errors and log lines
    call_id: str
    work: Work
    budget_s: float
    deadline: float  # time.monotonic()
    future: asyncio.Future[Any]
    after_commit: Callable[[Any], None] | None = None
    attempt: int = 0
    problem: str = field(default="the journal stayed busy with other writes")


def _run_batch(raw: sqlite3.Connection, batch: list[_Write]) -> list[tuple[bool, Any]]:
    """Each write in its own savepoint, on the database's thread: (ok, result or error).

    A batch of one write (most of them) needs no savepoint: what it raises
    rolls back the whole transaction, which holds nothing else, and reaches
    its caller all the same (`_write_batches` fails the batch with it, or
    retries it when the file is unavailable). Two statements fewer per save,
    and each statement is a hand-over of the GIL to this thread and back.
    """
    if len(batch) == 1:
        return [(True, batch[0].work(raw))]
    outcomes: list[tuple[bool, Any]] = []
    for write in batch:
        raw.execute("SAVEPOINT journal_write")
        try:
            value = write.work(raw)
        except Exception as error:
            if isinstance(error, sqlite3.OperationalError) and is_unavailable(error):
                raise  # the file, not this write: the whole batch is retried
            raw.execute("ROLLBACK TO journal_write")
            raw.execute("RELEASE journal_write")
            outcomes.append((False, error))
            continue
        raw.execute("RELEASE journal_write")
        outcomes.append((True, value))
    return outcomes


class GroupCommit:
    """Batches writes on one connection; see the module docstring."""

    def __init__(self, conn: aiosqlite.Connection, logger: Any) -> None:
        self._conn = conn
        self._log = logger
        self._queue: list[_Write] = []
        self._writer: asyncio.Task[None] | None = None
        self.batches = 0  # transactions committed (each one trip)
        self.writes = 0  # writes they carried

    async def write(
        self,
        what: str,
        call_id: str,
        work: Work,
        budget_s: float,
        after_commit: Callable[[Any], None] | None = None,
    ) -> Any:
        """Run `work` in a committed transaction (shared with other calls'
        writes); its result, or its own exception, or `JournalUnavailable`.
        `after_commit(result)` runs once committed, even for a cancelled caller."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(
            _Write(
                what,
                call_id,
                work,
                budget_s,
                time.monotonic() + budget_s,
                future,
                after_commit,
            )
        )
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_batches(), name="journal-writer")
        return await future

    def writer(self, what: str, budget_s: float) -> Callable[[Work], Awaitable[Any]]:
        """`write` for another component's writes on this connection (the
        webhook dispatcher's claims and outcomes), each bounded by `budget_s`."""

        def write(work: Work) -> Awaitable[Any]:
            return self.write(what, "-", work, budget_s)

        return write

    async def drain(self) -> None:
        """Wait until everything queued has committed or failed (before closing)."""
        while self._writer is not None and not self._writer.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._writer)

    async def _write_batches(self) -> None:
        delay = FIRST_RETRY_S
        while self._queue:
            batch = self._take_live()
            if not batch:
                continue
            try:
                outcomes = await write_in_one_trip(
                    self._conn, functools.partial(_run_batch, batch=batch)
                )
            except sqlite3.OperationalError as error:
                if not is_unavailable(error):
                    # A bug: in BEGIN or COMMIT, or in the write of a batch of one
                    # (no savepoint: its error comes out here, and goes to its caller).
                    self._fail(batch, error)
                    continue
                pause = self._requeue(batch, describe_sqlite_error(error), delay)
                await asyncio.sleep(pause)
                delay = min(delay * 2, MAX_RETRY_S)
                continue
            except asyncio.CancelledError:
                # Stopped (shutdown): no caller may wait forever.
                self._fail([*batch, *self._queue], JournalUnavailable("the journal was closed"))
                self._queue.clear()
                raise
            except Exception as error:  # e.g. the connection was closed under it
                self._fail(batch, error)
                continue
            delay = FIRST_RETRY_S
            self.batches += 1
            self.writes += len(batch)
            for write, (ok, value) in zip(batch, outcomes, strict=True):
                if ok and write.after_commit is not None:
                    try:
                        write.after_commit(value)
                    except Exception as error:
                        self._log.error(
                            "journal.after_commit_failed",
                            call_id=write.call_id,
                            write=write.what,
                            error=repr(error),
                        )
                if write.future.done():
                    continue
                if ok:
                    write.future.set_result(value)
                else:
                    write.future.set_exception(value)

    def _take_live(self) -> list[_Write]:
        """Everything queued that still has a caller and time left; the rest fail now."""
        queued, self._queue = self._queue, []
        now = time.monotonic()
        live = []
        for write in queued:
            if write.future.done():  # its caller was cancelled
                continue
            if now >= write.deadline:
                write.future.set_exception(self._unavailable(write))
                continue
            live.append(write)
        return live

    def _requeue(self, batch: list[_Write], problem: str, delay: float) -> float:
        """The file is unavailable: the batch goes back to the front, each write
        retried until its deadline. Returns how long to pause."""
        now = time.monotonic()
        retry: list[_Write] = []
        for write in batch:
            write.attempt += 1
            write.problem = problem
            remaining = write.deadline - now
            if remaining <= 0:
                if not write.future.done():
                    write.future.set_exception(self._unavailable(write))
                continue
            self._log.warning(
                "journal.write_retried",
                call_id=write.call_id,
                write=write.what,
                attempt=write.attempt,
                problem=problem,
                retry_in_s=round(min(delay, remaining), 3),
            )
            retry.append(write)
        self._queue[:0] = retry
        if not retry:
            return 0.0
        return max(0.0, min(delay, min(w.deadline for w in retry) - now))

    @staticmethod
    def _unavailable(write: _Write) -> JournalUnavailable:
        return JournalUnavailable(f"{write.what}: {write.problem} (for {write.budget_s:g} s)")

    @staticmethod
    def _fail(writes: list[_Write], error: BaseException) -> None:
        for write in writes:
            if not write.future.done():
                write.future.set_exception(error)
