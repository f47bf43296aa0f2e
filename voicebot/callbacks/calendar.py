"""When the office is open for callbacks: working hours per weekday, in one
time zone, minus public holidays and extra closed dates.

Pure: no clock, no I/O. The policy asks `is_open(at)` and `next_opening(at)`.

The settings form of the working hours, and its parser into `Opening`s,
are in voicebot/working_hours.py (below the settings, which check it).

Wall-clock times are read in `timezone`, so on a DST change day an opening
at 09:00 is still 09:00 local. A wall time that does not exist that day (in
the spring-forward gap) is moved on by the gap (03:30 in a 03:00→04:00
gap opens at 04:30); an ambiguous one (autumn) is its first occurrence.

Holidays and closed dates close the *openings that start* on that local
date: a night shift that began the evening before runs to its end.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

from voicebot.working_hours import Opening

#: How far ahead `next_opening` looks before deciding the office never opens.
SEARCH_DAYS = 800


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Wall time `at` on `day` in `zone`. PEP 495 `fold=0`: an ambiguous time
    (autumn) is its first occurrence; a time in the spring-forward gap is read
    with the offset before the change, so 03:30 in a 03:00→04:00 gap is 04:30."""
    return datetime.combine(day, at).replace(tzinfo=zone, fold=0)


@dataclass(frozen=True)
class WorkingCalendar:
    openings: tuple[Opening, ...]
    zone: ZoneInfo
    #: Local dates with no opening (public holidays, `closed_dates`).
    closed: Container[date] = frozenset()

    def _windows_around(self, day: date) -> Iterable[tuple[datetime, datetime]]:
        """Openings that start on `day` (local), as UTC instants."""
        if day in self.closed:
            return
        for opening in self.openings:
            if opening.weekday != day.weekday():
                continue
            start = _local(day, opening.start, self.zone)
            end_wall = datetime.combine(day, opening.start) + timedelta(minutes=opening.minutes)
            end = _local(end_wall.date(), end_wall.time(), self.zone)
            yield start.astimezone(UTC), end.astimezone(UTC)

    def window_at(self, at: datetime) -> tuple[datetime, datetime] | None:
        """The opening `at` falls in, or None when closed."""
        local_day = at.astimezone(self.zone).date()
        moment = at.astimezone(UTC)
        for day in (local_day - timedelta(days=1), local_day):
            for start, end in self._windows_around(day):
                if start <= moment < end:
                    return start, end
        return None

    def is_open(self, at: datetime) -> bool:
        return self.window_at(at) is not None

    def next_opening(self, at: datetime) -> datetime | None:
        """`at` itself when open, else the start of the next opening; None
        when nothing opens within `SEARCH_DAYS` (no hours configured, or
        every day closed)."""
        if self.is_open(at):
            return at
        moment = at.astimezone(UTC)
        local_day = at.astimezone(self.zone).date()
        for offset in range(SEARCH_DAYS):
            day = local_day + timedelta(days=offset)
            starts = [start for start, _ in self._windows_around(day) if start > moment]
            if starts:
                return min(starts).astimezone(at.tzinfo or UTC)
        return None


class ClosedDays:
    """Public holidays of `country` (the `holidays` package, years filled in
    as they are asked for) plus extra closed dates."""

    def __init__(
        self, country: str | None = None, dates: Iterable[date] = (), subdivision: str | None = None
    ) -> None:
        self._dates = frozenset(dates)
        self._holidays: holidays.HolidayBase | None = (
            holidays.country_holidays(country, subdiv=subdivision) if country else None
        )

    def __contains__(self, day: object) -> bool:
        if day in self._dates:
            return True
        return self._holidays is not None and isinstance(day, date) and day in self._holidays

    def name(self, day: date) -> str | None:
        if day in self._dates:
            return "closed date"
        if self._holidays is not None:
            return self._holidays.get(day)
        return None
