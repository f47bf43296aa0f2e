"""When the office is open for callbacks: working hours per weekday, in one
time zone, minus public holidays and extra closed dates.

Pure: no clock, no I/O. The policy asks `is_open(at)` and `next_opening(at)`.

Working hours in settings (TOML), one entry per weekday; a day left out is
closed. A range may cross midnight ("22:00-02:00" opens on that weekday at
22:00 and closes at 02:00 the next morning), and a day may hold several:

    [callbacks.working_hours]
    mon = "09:00-18:00"
    tue = ["09:00-13:00", "14:00-18:00"]
    sat = "10:00-14:00"

Wall-clock times are read in `timezone`, so on a DST change day an opening
at 09:00 is still 09:00 local. A wall time that does not exist that day (in
the spring-forward gap) is moved on by the gap (03:30 in a 03:00→04:00
gap opens at 04:30); an ambiguous one (autumn) is its first occurrence.

Holidays and closed dates close the *openings that start* on that local
date: a night shift that began the evening before runs to its end.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_FORM = (
    'a table of weekdays (mon..sun) to "HH:MM-HH:MM" or a list of them,'
    ' e.g. {mon = "09:00-18:00", sat = ["10:00-13:00", "14:00-16:00"]}'
)
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
#: How far ahead `next_opening` looks before deciding the office never opens.
SEARCH_DAYS = 800


class HoursError(ValueError):
    """The working hours cannot be read; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Opening:
    """One range on one weekday: starts at `start` that day, lasts `minutes`."""

    weekday: int  # 0 = Monday
    start: time
    minutes: int


def parse_range(text: str) -> tuple[time, int]:
    """`"09:00-18:00"` → (09:00, 540). An end at or before the start means
    the next day; "24:00" is the end of the day."""
    match = _RANGE.match(text)
    if match is None:
        raise HoursError(f'{text!r} is not a range "HH:MM-HH:MM"')
    sh, sm, eh, em = (int(part) for part in match.groups())
    if sh > 23 or sm > 59 or eh > 24 or em > 59 or (eh == 24 and em != 0):
        raise HoursError(f"{text!r}: hours go 00..23 (24:00 only as an end), minutes 00..59")
    start = sh * 60 + sm
    end = eh * 60 + em
    if end == start:
        raise HoursError(f"{text!r}: an empty range; for all day write 00:00-24:00")
    minutes = end - start if end > start else end + 24 * 60 - start
    return time(sh, sm), minutes


def parse_working_hours(value: object) -> tuple[Opening, ...]:
    """Settings form → openings; raises `HoursError` naming the day."""
    if not isinstance(value, Mapping):
        raise HoursError(f"expected {HOURS_FORM}")
    openings: list[Opening] = []
    for key, ranges in value.items():
        name = str(key).strip().lower()
        day = name[:3]
        if day not in WEEKDAYS or name not in (day, _full(day)):
            raise HoursError(f"{key!r} is not a weekday (expected one of {', '.join(WEEKDAYS)})")
        items: Iterable[object]
        if isinstance(ranges, str):
            items = [ranges] if ranges.strip() else []
        elif isinstance(ranges, list | tuple):
            items = ranges
        else:
            raise HoursError(f"{key}: expected {HOURS_FORM}")
        for item in items:
            if not isinstance(item, str):
                raise HoursError(f"{key}: {item!r} is not a string; expected {HOURS_FORM}")
            try:
                start, minutes = parse_range(item)
            except HoursError as exc:
                raise HoursError(f"{key}: {exc}") from None
            openings.append(Opening(WEEKDAYS.index(day), start, minutes))
    return tuple(sorted(openings, key=lambda o: (o.weekday, o.start)))


def _full(day: str) -> str:
    return {
        "mon": "monday",
        "tue": "tuesday",
        "wed": "wednesday",
        "thu": "thursday",
        "fri": "friday",
        "sat": "saturday",
        "sun": "sunday",
    }[day]


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


def holiday_country_known(country: str) -> bool:
    return country.upper() in holidays.list_supported_countries()
