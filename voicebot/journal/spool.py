"""The spool: where a finished call goes when the database will not take it.

A manager who keyed an entry hears "saved" only once the entry is durable.
When the journal cannot commit it before its deadline (another process holds
the write lock, the disk is full, the file turned read-only), the entry is
appended here instead: one JSON line per call, written with `O_APPEND` and
fsync'd (the directory too, when the file is new), so it survives a crash.

Replay (at start-up and periodically while running) feeds each line to
`Journal.finish_call`, which writes the row and its webhook in one
transaction and is idempotent: a call already finished is skipped. So a
crash between the commit and the rewrite of the spool, or a line replayed
twice, never stores a call twice nor sends its webhook twice. Lines the
journal still cannot take stay for the next replay; a line that is not a
valid entry at all is moved to `<spool>.rejected` (and logged) so it never
blocks the others.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from voicebot.journal.store import CallOutcome, CallStart, Journal, JournalUnavailable
from voicebot.logs import get_logger

#: A replayed line may keep the database this long before the rest wait for the next pass.
REPLAY_DEADLINE_S = 1.0


def spool_path(database: Path, spool_dir: Path | None = None) -> Path:
    """`<dir>/<database name>.spool.jsonl`, next to the database by default."""
    return (spool_dir or database.parent) / f"{database.name}.spool.jsonl"


def encode_entry(start: CallStart, outcome: CallOutcome) -> str:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, Decimal):
            return str(value)
        return value

    record = {
        "start": {k: plain(v) for k, v in asdict(start).items()},
        "outcome": {k: plain(v) for k, v in asdict(outcome).items()},
    }
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def decode_entry(line: str) -> tuple[CallStart, CallOutcome]:
    """Raises ValueError / KeyError / TypeError on a line that is not an entry."""
    record = json.loads(line)
    start = dict(record["start"])
    start["started_at"] = datetime.fromisoformat(start["started_at"])
    outcome = dict(record["outcome"])
    outcome["ended_at"] = datetime.fromisoformat(outcome["ended_at"])
    if outcome["value"] is not None:
        outcome["value"] = Decimal(outcome["value"])
    if outcome["status"] not in ("confirmed", "incomplete"):
        raise ValueError(f"unknown status {outcome['status']!r}")
    return CallStart(**start), CallOutcome(**outcome)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, path: Path, logger: Any = None) -> None:
        self.path = path
        self._log = logger or get_logger()
        # Appends and the replay's rewrite of the file never interleave.
        self._lock = asyncio.Lock()

    @property
    def rejected_path(self) -> Path:
        return self.path.with_name(self.path.name + ".rejected")

    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    async def append(self, start: CallStart, outcome: CallOutcome) -> None:
        """Durably add one finished call. Raises OSError if even that fails."""
        line = encode_entry(start, outcome) + "\n"
        async with self._lock:
            await asyncio.to_thread(self._append, self.path, line)

    @staticmethod
    def _append(path: Path, line: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            _fsync_dir(path.parent)

    async def replay(self, journal: Journal) -> list[tuple[CallStart, CallOutcome, list[str]]]:
        """Move what the journal takes now out of the spool; returns what moved
        (start, outcome, webhook ids enqueued)."""
        moved: list[tuple[CallStart, CallOutcome, list[str]]] = []
        if not self.pending():
            return moved
        async with self._lock:
            lines = (await asyncio.to_thread(self.path.read_text, "utf-8")).splitlines()
            kept: list[str] = []
            rejected: list[str] = []
            blocked = False
            for line in lines:
                if not line.strip():
                    continue
                if blocked:
                    kept.append(line)
                    continue
                try:
                    start, outcome = decode_entry(line)
                except (ValueError, KeyError, TypeError) as error:
                    self._log.error(
                        "spool.entry_rejected", error=str(error), moved_to=str(self.rejected_path)
                    )
                    rejected.append(line)
                    continue
                try:
                    ids = await journal.finish_call(start, outcome, deadline_s=REPLAY_DEADLINE_S)
                except JournalUnavailable as error:
                    self._log.warning(
                        "spool.replay_deferred", call_id=start.call_id, problem=str(error)
                    )
                    blocked = True  # the database is still away: keep this and the rest
                    kept.append(line)
                    continue
                moved.append((start, outcome, ids))
            if moved or rejected:
                await asyncio.to_thread(self._rewrite, kept, rejected)
        return moved

    def _rewrite(self, kept: list[str], rejected: list[str]) -> None:
        if rejected:
            for line in rejected:
                self._append(self.rejected_path, line + "\n")
        if not kept:
            self.path.unlink(missing_ok=True)
            _fsync_dir(self.path.parent)
            return
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write("".join(line + "\n" for line in kept))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, self.path)
        _fsync_dir(self.path.parent)
