"""One API worker process: computes heavy reads' bodies off the bot's event
loop (issue 6 item 10). The pool (voicebot/api/worker_pool.py) starts it as
`python -m voicebot.api.worker`, a fresh interpreter (what multiprocessing's
`spawn` does; never a fork of the threaded bot), and talks to it over its
stdin and stdout in frames: an 8-byte big-endian length, then a pickle.

    pool -> worker   WorkerSetup, then one Job at a time
    worker -> pool   READY (or WorkerFailure), then per job a Body or a WorkerFailure

The worker lowers its own CPU priority: `READER_NICENESS` nicer (as the
bot's reader thread, voicebot/journal/reader.py), and on Linux the SCHED_IDLE
policy, which runs it only on CPU time no ordinary task wants and lets a
waking ordinary task (the bot's media clock) take its core at once. Nice
alone left the clock's wake-ups waiting behind a worker's time slice:
bench/api_isolation.py measured the send gap's p99 at 25.5-30 ms under 200
clients with nice 10 or 19, 24.7 ms with SCHED_IDLE (baseline 22). What it
costs: on a machine whose cores something else keeps busy, reports wait
(their clients time out) rather than the calls. Its answer pipe is widened to
1 MB where Linux allows, so a report is handed over in one write and the
worker is free for the next job. It opens its own read-only
(`query_only`) connection to the journal file and keeps it between jobs, so a
worker never writes. It ends at EOF on stdin: when the pool closes it, or when
the bot is gone. Ctrl-C in a terminal reaches the whole process group; the
worker leaves that to the bot, which closes it in order.

Pickles come only from the bot that started the worker, over a pipe it owns.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pickle
import signal
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from voicebot.journal.call_types import TypeRules

HEADER = struct.Struct(">Q")
READY = "ready"


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    database: Path
    rules: TypeRules
    log_level: str
    log_format: str


@dataclass(frozen=True, slots=True)
class WorkerFailure:
    """A job (or the start) raised: the request gets a 500, the worker goes on."""

    error: str


def frame(message: object) -> bytes:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(data)) + data


def read_frame(stream: IO[bytes]) -> Any:
    """The next message, or None at EOF."""
    data = read_frame_bytes(stream)
    return None if data is None else pickle.loads(data)


def read_frame_bytes(stream: IO[bytes]) -> bytes | None:
    head = stream.read(HEADER.size)
    if len(head) < HEADER.size:
        return None
    (size,) = HEADER.unpack(head)
    data = stream.read(size)
    return data if len(data) == size else None


def run_when_idle() -> None:
    """SCHED_IDLE for the calling thread and the threads it starts (Linux)."""
    policy = getattr(os, "SCHED_IDLE", None)
    if policy is None:
        return
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError:
        return  # kept at its nice value


def widen_pipe(fd: int, size: int = 1 << 20) -> None:
    """Let `fd` (a pipe) hold `size` bytes; Linux only, up to fs.pipe-max-size."""
    try:
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except OSError:
        return  # not a pipe, or larger than this user may ask: 64 KB it is


def serve(inp: IO[bytes], out: IO[bytes]) -> int:
    # Imported here: `frame`/`read_frame` above are all the pool needs of this module.
    from voicebot.journal.calls import CallLog
    from voicebot.journal.database import DatabaseError
    from voicebot.journal.reader import READER_NICENESS, lower_thread_priority, open_reader
    from voicebot.logs import configure_logging, get_logger

    # Before any thread exists: the connection's thread inherits it.
    lower_thread_priority(READER_NICENESS)
    run_when_idle()
    widen_pipe(out.fileno())
    setup = read_frame(inp)
    if not isinstance(setup, WorkerSetup):
        return 0
    configure_logging(setup.log_level, setup.log_format)
    log = get_logger(api_worker=os.getpid())
    loop = asyncio.new_event_loop()

    def send(message: object) -> None:
        out.write(frame(message))
        out.flush()

    try:
        conn = loop.run_until_complete(open_reader(setup.database, niceness=0))
    except DatabaseError as error:
        log.error("api_worker.open_failed", error=str(error))
        send(WorkerFailure(str(error)))
        return 1
    call_log = CallLog(conn, setup.rules, reader=conn)
    send(READY)
    try:
        while (data := read_frame_bytes(inp)) is not None:
            job: Any = None
            try:
                job = pickle.loads(data)
                body = loop.run_until_complete(job.body(call_log))
            except Exception as error:
                # A bug or a database failure: aiohttp would log it with its
                # traceback and answer 500; so does the worker, then goes on.
                log.exception("api_worker.job_failed", job=type(job).__name__)
                send(WorkerFailure(f"{type(error).__name__}: {error}"))
                continue
            send(body)
    except BrokenPipeError:
        pass  # the bot is gone
    finally:
        loop.run_until_complete(conn.close())
        loop.close()
    return 0


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The frames go out on a copy of stdout; anything printed by mistake goes
    # to stderr (the bot's log) instead of corrupting them.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return serve(sys.stdin.buffer, out)


if __name__ == "__main__":
    # Run as the module by its name, not as __main__: the pickles name
    # voicebot.api.worker's classes, and isinstance must find them the same.
    from voicebot.api import worker

    raise SystemExit(worker.main())
