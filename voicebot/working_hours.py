"""Working hours as settings write them, read into openings; the holidays
country as the `holidays` package knows it.

Pure and below `voicebot.settings`, which checks `callbacks.working_hours`
and `callbacks.holidays_country` with these; the callback calendar
(voicebot/callbacks/calendar.py) builds on the openings.

One entry per weekday; a day left out is closed. A range may cross midnight
("22:00-02:00" opens on that weekday at 22:00 and closes at 02:00 the next
morning), and a day may hold several:

    [callbacks.working_hours]
    mon = "09:00-18:00"
    tue = ["09:00-13:00", "14:00-18:00"]
    sat = "10:00-14:00"
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import time

import holidays

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOURS_FORM = (
    'a table of weekdays (mon..sun) to "HH:MM-HH:MM" or a list of them,'
    ' e.g. {mon = "09:00-18:00", sat = ["10:00-13:00", "14:00-16:00"]}'
)
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


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


def holiday_country_known(country: str) -> bool:
    return country.upper() in holidays.list_supported_countries()
