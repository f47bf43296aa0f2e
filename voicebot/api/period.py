"""`from` / `to` of lists and reports.

A bare date is a whole day in `journal.timezone` (`to` inclusive: to=2026-03-29
ends at the next local midnight, so a DST day is 23 or 25 hours long); a
date-time without an offset is local time there too; one with an offset or Z
is taken as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import Field, StringConstraints

from voicebot.api.schema import QueryModel, refuse

# The pattern says as much as a regular expression can of what
# `datetime.fromisoformat` takes (years 0001-9999, months 01-12, days 01-31,
# hours 00-23); a day a month does not have (02-30) is refused with 400 naming
# the field.
_YEAR = r"(000[1-9]|00[1-9]\d|0[1-9]\d\d|[1-9]\d{3})"
_DAY = rf"{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
_CLOCK = r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
_OFFSET = r"(Z|[+-]([01]\d|2[0-3]):[0-5]\d)"
PeriodText = Annotated[str, StringConstraints(pattern=rf"^{_DAY}([T ]{_CLOCK}{_OFFSET}?)?$")]
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
            moment = local_midnight(day, zone)
        else:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
    except (ValueError, OverflowError):
        raise PeriodError(field, f"{text!r} is not a real date or date-time") from None
    try:
        # Days at the ends of the calendar (0001-01-01, 9999-12-31) leave what
        # datetime holds once moved to UTC; refuse them here, not in a report.
        moment.astimezone(UTC).timestamp()
    except (ValueError, OverflowError):
        raise PeriodError(field, f"{text!r} is out of range") from None
    return moment


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


class PeriodQuery(QueryModel):
    from_: PeriodText | None = FromField
    to: PeriodText | None = ToField

    def period(
        self,
        request: web.Request,
        zone: ZoneInfo,
        default_days: int | None = None,
        now: datetime | None = None,
    ) -> Period:
        """`from`/`to` resolved in `zone`; a bad one is a 400 naming it."""
        try:
            return resolve(self.from_, self.to, zone, default_days=default_days, now=now)
        except PeriodError as exc:
            raise refuse(request, 400, str(exc), exc.field) from None
