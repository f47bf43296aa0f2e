"""Jobs a test hands the API worker pool directly (tests/app/test_api_workers.py),
in a module of their own: the worker process imports it by name to unpickle
them, which it cannot do with a test module pytest imported by file."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from voicebot.api.body import Body
from voicebot.journal.calls import CallLog


@dataclass(frozen=True)
class DeleteEverything:
    """Tries to write: the worker's connection must refuse it."""

    async def body(self, call_log: CallLog) -> Body:
        await call_log.reader.execute("DELETE FROM calls")
        return Body(b"deleted", "text/plain")


@dataclass(frozen=True)
class OwnPriority:
    """The worker's nice value, and the scheduling policies of all its threads
    (its SQLite connection's among them), as text."""

    async def body(self, call_log: CallLog) -> Body:
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        threads = os.listdir("/proc/self/task")
        policies = {os.sched_getscheduler(int(thread)) for thread in threads}
        return Body(f"{nice} {len(threads)} {' '.join(map(str, policies))}".encode(), "text/plain")


@dataclass(frozen=True)
class NotImportable:
    """Unpickles as an import the worker cannot do: it must say so and go on."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return importlib.import_module, ("tests.app.no_such_module",)

    async def body(self, call_log: CallLog) -> Body:
        return Body(b"", "text/plain")
