"""Asterisk `cdr_csv` Master.csv rows as call events.

Column order, as `cdr/cdr_csv.c` (`build_csv_record`) writes it:

    accountcode, src, dst, dcontext, clid, channel, dstchannel, lastapp,
    lastdata, start, answer, end, duration, billsec, disposition, amaflags
    [, uniqueid]          when cdr.conf [csv] loguniqueid=yes
    [, userfield]         when loguserfield=yes
    [, peeraccount, linkedid, sequence]   when newcdrcolumns=yes

Times are "%Y-%m-%d %H:%M:%S" in the PBX's local time unless `usegmtime=yes`,
so the importer takes the zone they are in. An unanswered call has an empty
`answer`. `disposition` is ANSWERED, NO ANSWER, BUSY, FAILED or CONGESTION.

The idempotency key is `uniqueid` when logged, else a hash of the row, so
importing the same file twice adds nothing. Direction is not in the CDR: it
is told from the shape of the numbers (extensions are short), which is what
a PBX's own call log does too.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from voicebot.journal.call_events import CallEvent

FIELDS = (
    "accountcode",
    "src",
    "dst",
    "dcontext",
    "clid",
    "channel",
    "dstchannel",
    "lastapp",
    "lastdata",
    "start",
    "answer",
    "end",
    "duration",
    "billsec",
    "disposition",
    "amaflags",
)
DISPOSITIONS = {
    "ANSWERED": "answered",
    "NO ANSWER": "missed",
    "BUSY": "busy",
    "FAILED": "failed",
    "CONGESTION": "failed",
}
# "PJSIP/201-0000002a", "SIP/office-201-0001", "Local/201@from-internal-00;1"
_CHANNEL_PEER = re.compile(r"^[A-Za-z0-9]+/([^-@;/]+)")


@dataclass(frozen=True, slots=True)
class RejectedRow:
    line: int
    reason: str


def _when(text: str, zone: ZoneInfo) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=zone)


def _is_extension(number: str, max_digits: int) -> bool:
    return number.isdigit() and len(number) <= max_digits


def _peer(channel: str) -> str | None:
    match = _CHANNEL_PEER.match(channel.strip())
    return match.group(1) if match else None


def row_to_event(row: list[str], zone: ZoneInfo, extension_digits: int = 5) -> CallEvent:
    """One Master.csv row as an event; raises ValueError naming the column."""
    if len(row) < len(FIELDS):
        raise ValueError(f"{len(row)} columns, expected at least {len(FIELDS)}")
    record = dict(zip(FIELDS, row, strict=False))
    status = DISPOSITIONS.get(record["disposition"].strip().upper())
    if status is None:
        raise ValueError(f"disposition: {record['disposition']!r} is not one Asterisk writes")
    times: dict[str, datetime | None] = {}
    for name in ("start", "answer", "end"):
        try:
            times[name] = _when(record[name], zone)
        except ValueError:
            raise ValueError(f"{name}: {record[name]!r} is not YYYY-MM-DD HH:MM:SS") from None
    started = times["start"]
    if started is None:
        raise ValueError("start: empty")
    ended = times["end"]
    answered = times["answer"] if status == "answered" else None
    try:
        billsec = int(record["billsec"] or 0)
    except ValueError:
        raise ValueError(f"billsec: {record['billsec']!r} is not a whole number") from None
    if status == "answered" and answered is None and ended is not None:
        # Through a timestamp: wall-clock arithmetic is wrong across DST.
        answered = datetime.fromtimestamp(ended.timestamp() - billsec, UTC)
    src, dst = record["src"].strip(), record["dst"].strip()
    src_ext, dst_ext = _is_extension(src, extension_digits), _is_extension(dst, extension_digits)
    manager: str | None
    if src_ext and dst_ext:
        direction = "internal"
        manager = src
    elif src_ext:
        direction = "outbound"
        manager = src
    else:
        direction = "inbound"
        peer = _peer(record["dstchannel"])
        manager = peer if peer and _is_extension(peer, extension_digits) else None
        manager = manager or (dst if dst_ext else None)
    unique_id = row[len(FIELDS)].strip() if len(row) > len(FIELDS) else ""
    call_id = unique_id or "cdr-" + hashlib.sha256("\x1f".join(row).encode()).hexdigest()[:32]
    try:
        return CallEvent(
            call_id=call_id,
            direction=direction,
            caller=src or None,
            callee=dst or None,
            status=status,
            started_at=started,
            answered_at=answered,
            ended_at=ended,
            manager=manager,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "row"
        raise ValueError(f"{where}: {first['msg']}") from None


def read_master_csv(
    lines: Iterable[str], zone: ZoneInfo, extension_digits: int = 5
) -> Iterator[CallEvent | RejectedRow]:
    """Events in file order, with a `RejectedRow` (line number, reason) for
    each row that cannot be read; the import goes on past them."""
    reader = csv.reader(lines)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield RejectedRow(reader.line_num, f"not CSV: {exc}")
            continue
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            yield row_to_event(row, zone, extension_digits)
        except ValueError as exc:
            yield RejectedRow(reader.line_num, str(exc))
