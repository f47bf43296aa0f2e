"""`from` / `to` of lists and reports.

A bare date is a whole day in `journal.timezone` (`to` inclusive: to=2026-03-29
ends at the next local midnight, so a DST day is 23 or 25 hours long); a
date-time without an offset is local time there too; one with an offset or Z
is taken as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import Field, StringConstraints

PeriodText = Annotated[
    str,
    StringConstraints(
        pattern=r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"
    ),
]
FromField = Field(None, alias="from", description="start: a date (local day) or a date-time")
ToField = Field(None, alias="to", description="end: a date (inclusive) or a date-time (exclusive)")

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class PeriodError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True, slots=True)
class Period:
    since: datetime | None
    until: datetime | None


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def _bound(text: str, zone: ZoneInfo, field: str, end: bool) -> datetime:
    try:
        if _DATE.match(text):
            day = date.fromisoformat(text)
            if end:
                day = day + timedelta(days=1)
            return local_midnight(day, zone)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise PeriodError(field, f"{text!r} is not a real date or date-time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def resolve(
    since: str | None,
    until: str | None,
    zone: ZoneInfo,
    default_days: int | None = None,
    now: datetime | None = None,
) -> Period:
    start = _bound(since, zone, "from", end=False) if since else None
    stop = _bound(until, zone, "to", end=True) if until else None
    if start is None and default_days is not None and now is not None:
        today = now.astimezone(zone).date()
        start = local_midnight(today - timedelta(days=default_days - 1), zone)
    if start is not None and stop is not None and stop.timestamp() <= start.timestamp():
        raise PeriodError("to", "must be after from")
    return Period(start, stop)
