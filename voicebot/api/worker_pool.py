"""Heavy API reads computed in worker processes (issue 6 item 10).

The bot's one event loop ticks every call's media every 20 ms. Slicing a
request's rows -> models -> JSON work (voicebot/slices.py) bounds how long one
piece holds the loop, but with 200 clients the pieces still add up on the
bot's core, and a thread is no way out (the work holds the GIL). So the
calls list and the reports are computed in `http.api_workers` processes of
their own (voicebot/api/worker.py): the handler validates the query here,
sends the worker a small `Job`, and writes the `Body` bytes it gets back.
The loop's share of a request is then parsing, a pickle of a few hundred
bytes and a socket write.

- Lazy: no process exists until the first heavy request; a worker is
  started when a job finds none idle (at most `size`), then kept.
- One job per worker at a time; at most `size` jobs run, more wait here (the
  request gate's heavy lane already holds them to `size`).
- A worker that dies mid-job (OOM killer, kill -9): that request gets
  `WorkerLost` (the handler answers 503 and logs one line), the worker is
  reaped, and the next job starts a fresh one. A request whose handler is
  cancelled mid-job ends its worker too: its late answer must not become the
  next job's.
- `close()` ends every worker (EOF on stdin, then SIGKILL after a grace) and
  waits for each, so the bot leaves no child process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

from voicebot.api.body import Body, Job
from voicebot.api.worker import HEADER, READY, WorkerFailure, WorkerSetup, frame
from voicebot.journal.call_types import TypeRules

#: Seconds a worker gets to end on EOF before it is killed.
CLOSE_GRACE_S = 2.0
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class WorkerLost(Exception):
    """The worker died (or could not start) before answering: retry later."""


class WorkerError(Exception):
    """The job raised in the worker (logged there): an internal error."""


@dataclass(eq=False)
class _Worker:
    process: asyncio.subprocess.Process

    @property
    def pid(self) -> int:
        return self.process.pid

    async def exchange(self, message: object) -> object:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(frame(message))
            await stdin.drain()
            (size,) = HEADER.unpack(await stdout.readexactly(HEADER.size))
            return pickle.loads(await stdout.readexactly(size))
        except (asyncio.IncompleteReadError, ConnectionError) as error:
            raise WorkerLost(f"worker {self.pid} ended mid-job") from error

    async def end(self, grace_s: float) -> int | None:
        """Close its stdin, wait up to `grace_s`, then kill; its exit status."""
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            return await asyncio.wait_for(self.process.wait(), grace_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            return await self.process.wait()


class WorkerPool:
    def __init__(
        self,
        database: Path,
        rules: TypeRules,
        size: int,
        *,
        log_level: str = "info",
        log_format: str = "console",
    ) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self._setup = WorkerSetup(Path(database).resolve(), rules, log_level, log_format)
        self._slots = asyncio.Semaphore(size)
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._closed = False
        self.started = 0  # processes started since the pool was made
        self.lost = 0  # workers that died mid-job
        self.in_flight = 0  # jobs sent to a worker and not yet answered

    def pids(self) -> list[int]:
        """The worker processes alive now (none before the first job)."""
        return sorted(worker.pid for worker in self._live)

    async def run(self, job: Job) -> Body:
        """The job's body, computed in a worker. Raises `WorkerLost` (retry
        later) or `WorkerError` (the job raised)."""
        async with self._slots:
            if self._closed:
                raise WorkerLost("the API workers are shut down")
            worker = self._idle.pop() if self._idle else await self._start()
            self.in_flight += 1
            try:
                answer = await worker.exchange(job)
            except WorkerLost:
                self.lost += 1
                status = await self._discard(worker)
                raise WorkerLost(
                    f"API worker {worker.pid} ended mid-job (exit status {status})"
                ) from None
            except BaseException:
                # Cancelled mid-job: its answer is still coming; end it.
                await asyncio.shield(self._discard(worker, grace_s=0))
                raise
            finally:
                self.in_flight -= 1
            if self._closed:
                await self._discard(worker)
            else:
                self._idle.append(worker)
        if isinstance(answer, WorkerFailure):
            raise WorkerError(answer.error)
        assert isinstance(answer, Body)
        return answer

    async def _start(self) -> _Worker:
        env = dict(os.environ)
        # The child imports this very voicebot, whatever its working directory.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "voicebot.api.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
            )
        except OSError as error:
            raise WorkerLost(f"could not start an API worker: {error}") from None
        worker = _Worker(process)
        self._live.add(worker)
        self.started += 1
        try:
            answer = await worker.exchange(self._setup)
        except BaseException:
            await asyncio.shield(self._discard(worker, grace_s=0))
            raise
        if answer != READY:
            await self._discard(worker)
            why = answer.error if isinstance(answer, WorkerFailure) else repr(answer)
            raise WorkerLost(f"the API worker could not start: {why}")
        return worker

    async def _discard(self, worker: _Worker, grace_s: float = CLOSE_GRACE_S) -> int | None:
        self._live.discard(worker)
        if worker in self._idle:
            self._idle.remove(worker)
        return await worker.end(grace_s)

    async def close(self) -> None:
        """End every worker and wait for each. Jobs in flight get `WorkerLost`."""
        self._closed = True
        workers = list(self._live)
        await asyncio.gather(*(self._discard(worker) for worker in workers))
