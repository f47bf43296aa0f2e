"""Running the suite on parallel workers (pytest-xdist), and the tests that take
their turn alone.

`pytest` runs the suite on several worker processes (`-n auto` in pyproject's
addopts). Most tests wait on real time (prompts played at 50 packets a second,
SIP timers, SIPp scenarios) with the CPU idle, so the workers are more than
the cores: `workers()` is twice the CPU count, between 2 and 8 (fewer for a
run of a few named files); `PYTEST_XDIST_AUTO_NUM_WORKERS` overrides it, and
`-n 0` runs in one process.

A test marked `@pytest.mark.alone` measures pacing against the wall clock
(packets per second, inter-arrival times, a media clock's gaps): with other
workers' bots, SIPp and sox busy on the same cores it would measure them. Such
a test waits until every other worker has finished the test it is running, and
no worker starts another until it is done. Two locks on files in the run's base
temporary directory (shared by its workers, unique to the run) do that: every
test holds the room shared and an `alone` test holds it exclusive; entering
goes through the gate, which an `alone` test keeps while it waits, so the tests
that keep coming do not starve it.

Waiting costs: an `alone` test that comes while another worker runs the
60 s bridge test holds every worker for up to a minute. So the `alone` tests
run first, one after another, on one worker: each worker puts them first in
its collection and names them in `alone.txt` in that shared directory, and
`AloneFirst` (pyproject's `--dist loadfile`, one file's tests to one worker)
makes them one unit of work of their own, the first handed out. Consecutive
`alone` tests keep the room between them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadFileScheduling

__all__ = ["AloneFirst", "Turns", "alone_first", "workers"]

MAX_WORKERS = 8
ALONE_LIST = "alone.txt"


def workers(args: list[str], root: Path, cpus: int | None = None) -> int:
    """Parallel workers for `-n auto`: twice the CPUs, between 2 and MAX_WORKERS.

    When `args` name test files only (`pytest tests/x/test_y.py`), no more than
    there are files, since one file runs on one worker: and a single file runs
    in this process (0), so a quick run does not pay for starting workers."""
    count = max(2, min(MAX_WORKERS, 2 * (cpus or os.cpu_count() or 1)))
    files = {arg.split("::")[0] for arg in args}
    if files and all((root / file).is_file() for file in files):
        count = min(count, len(files))
    return 0 if count == 1 else count


class Turns:
    """The gate and the room of one test run, opened by one worker."""

    def __init__(self, directory: Path) -> None:
        self._gate: IO[bytes] = (directory / "turns-gate.lock").open("ab")
        self._room: IO[bytes] = (directory / "turns-room.lock").open("ab")
        self._alone = False

    def enter(self, *, alone: bool) -> None:
        """Take the room: shared, or exclusive for an `alone` test (kept if held)."""
        if alone and self._alone:
            return
        fcntl.flock(self._gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(self._room, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            if not alone:
                fcntl.flock(self._gate, fcntl.LOCK_UN)
        self._alone = alone

    def leave(self, *, keep_alone: bool = False) -> None:
        """Give the room back; `keep_alone`: the next test is `alone` too."""
        if self._alone and keep_alone:
            return
        fcntl.flock(self._room, fcntl.LOCK_UN)
        if self._alone:
            fcntl.flock(self._gate, fcntl.LOCK_UN)
        self._alone = False

    @contextlib.contextmanager
    def turn(self, item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
        self.enter(alone=is_alone(item))
        try:
            yield
        finally:
            self.leave(keep_alone=nextitem is not None and is_alone(nextitem))

    def close(self) -> None:
        self.leave()
        self._gate.close()
        self._room.close()


def is_alone(item: pytest.Item) -> bool:
    return item.get_closest_marker("alone") is not None


def alone_first(items: list[pytest.Item], directory: Path) -> None:
    """`alone` tests first, the rest in collection order; the `alone` ones'
    node ids written to `directory`/ALONE_LIST for `AloneFirst`."""
    alone = [item for item in items if is_alone(item)]
    items[:] = alone + [item for item in items if not is_alone(item)]
    written = directory / f"{ALONE_LIST}.{os.getpid()}"
    written.write_text("".join(f"{item.nodeid}\n" for item in alone), encoding="utf-8")
    written.replace(directory / ALONE_LIST)  # every worker writes the same list


class AloneFirst(LoadFileScheduling):
    """`--dist loadfile`, but the `alone` tests are one unit of their own: the
    workers put them first, so that unit is handed out first."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        # the controller's base temporary directory: its workers' is under it
        self._list = config._tmp_path_factory.getbasetemp() / ALONE_LIST
        self._alone: frozenset[str] | None = None

    def _split_scope(self, nodeid: str) -> str:
        if self._alone is None:  # first asked once every worker has collected
            text = self._list.read_text(encoding="utf-8") if self._list.exists() else ""
            self._alone = frozenset(text.splitlines())
        return ALONE_LIST if nodeid in self._alone else super()._split_scope(nodeid)
