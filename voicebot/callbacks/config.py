"""`callbacks.*` settings → the pure pieces (calendar, policy, number rules)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from voicebot.callbacks.calendar import ClosedDays, WorkingCalendar
from voicebot.callbacks.numbers import NumberRules
from voicebot.callbacks.policy import CallbackPolicy, RetryRules
from voicebot.settings import CallbackSettings
from voicebot.working_hours import parse_working_hours


def calendar_from_settings(s: CallbackSettings) -> WorkingCalendar:
    return WorkingCalendar(
        parse_working_hours(s.working_hours),
        ZoneInfo(s.timezone),
        ClosedDays(s.holidays_country, s.closed_dates, s.holidays_subdivision),
    )


def policy_from_settings(s: CallbackSettings) -> CallbackPolicy:
    return CallbackPolicy(
        calendar_from_settings(s),
        RetryRules(
            first_delay_s=s.first_delay_s,
            max_attempts=s.max_attempts,
            retry_interval_s=s.retry_interval_s,
            max_calls_per_number_per_day=s.max_calls_per_number_per_day,
        ),
    )


def numbers_from_settings(s: CallbackSettings) -> NumberRules:
    return NumberRules(s.default_region, s.patterns(), s.dial_template)
