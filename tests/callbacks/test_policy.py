"""The callback policy, calendar and number rules: pure, with `now` passed in
(the injectable clock), so every case is a moment chosen on purpose."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from voicebot.callbacks.attempt import AttemptResult, Outcome
from voicebot.callbacks.calendar import ClosedDays, WorkingCalendar
from voicebot.callbacks.numbers import ClientNumber, NumberRules, RefusedNumber
from voicebot.callbacks.policy import CallbackPolicy, RetryRules
from voicebot.phone_numbers import default_patterns
from voicebot.settings import Settings
from voicebot.working_hours import HoursError, parse_working_hours

KYIV = ZoneInfo("Europe/Kyiv")
NEW_YORK = ZoneInfo("America/New_York")
WEEKDAYS_9_18 = {d: "09:00-18:00" for d in ("mon", "tue", "wed", "thu", "fri")}


def calendar(
    hours: dict[str, str | list[str]] | None = None,
    zone: ZoneInfo = KYIV,
    closed: ClosedDays | None = None,
) -> WorkingCalendar:
    return WorkingCalendar(
        parse_working_hours(WEEKDAYS_9_18 if hours is None else hours), zone, closed or ClosedDays()
    )


def local(zone: ZoneInfo, *args: int) -> datetime:
    return datetime(*args, tzinfo=zone)  # type: ignore[misc]


# -- working hours ---------------------------------------------------------


def test_open_inside_hours_and_closed_outside() -> None:
    cal = calendar()
    assert cal.is_open(local(KYIV, 2026, 11, 23, 9, 0))  # Monday 09:00 sharp
    assert cal.is_open(local(KYIV, 2026, 11, 23, 17, 59))
    assert not cal.is_open(local(KYIV, 2026, 11, 23, 18, 0))  # the end is exclusive
    assert not cal.is_open(local(KYIV, 2026, 11, 23, 8, 59))
    assert not cal.is_open(local(KYIV, 2026, 11, 28, 12, 0))  # Saturday


def test_next_opening_after_friday_evening_is_monday_morning() -> None:
    friday_evening = local(KYIV, 2026, 11, 27, 19, 30)
    assert calendar().next_opening(friday_evening) == local(KYIV, 2026, 11, 30, 9, 0)


def test_hours_are_read_in_the_configured_zone() -> None:
    """09:00 in New York is 14:00 UTC in November; the same UTC instant is
    closed for a Kyiv office (16:00 there is open, 07:00 is not)."""
    ny = calendar(zone=NEW_YORK)
    at = datetime(2026, 11, 23, 13, 59, tzinfo=UTC)  # 08:59 New York, 15:59 Kyiv
    assert not ny.is_open(at)
    assert calendar().is_open(at)
    assert ny.next_opening(at) == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def test_night_shift_across_midnight() -> None:
    cal = calendar({"fri": "22:00-02:00"})
    assert cal.is_open(local(KYIV, 2026, 11, 27, 23, 30))  # Friday night
    assert cal.is_open(local(KYIV, 2026, 11, 28, 1, 59))  # Saturday, still Friday's shift
    assert not cal.is_open(local(KYIV, 2026, 11, 28, 2, 0))
    assert not cal.is_open(local(KYIV, 2026, 11, 28, 23, 0))  # Saturday night: no shift
    assert cal.next_opening(local(KYIV, 2026, 11, 28, 3, 0)) == local(KYIV, 2026, 12, 4, 22, 0)


def test_split_day() -> None:
    cal = calendar({"mon": ["09:00-13:00", "14:00-18:00"]})
    lunch = local(KYIV, 2026, 11, 23, 13, 30)
    assert not cal.is_open(lunch)
    assert cal.next_opening(lunch) == local(KYIV, 2026, 11, 23, 14, 0)


def test_dst_spring_forward_day_keeps_local_opening() -> None:
    """Kyiv: clocks go 03:00 → 04:00 on Sunday 2026-03-29. An office open
    Sunday 09:00-18:00 opens at 09:00 local, i.e. 06:00 UTC (not 07:00)."""
    cal = calendar({"sun": "09:00-18:00"})
    opening = cal.next_opening(datetime(2026, 3, 29, 0, 0, tzinfo=UTC))
    assert opening == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert opening.astimezone(KYIV).hour == 9
    # The window is 9 wall-clock hours long: closes at 15:00 UTC.
    assert cal.is_open(datetime(2026, 3, 29, 14, 59, tzinfo=UTC))
    assert not cal.is_open(datetime(2026, 3, 29, 15, 0, tzinfo=UTC))


def test_dst_night_shift_through_the_gap() -> None:
    """A Saturday 22:00-06:00 shift over the spring-forward night lasts 7 real
    hours; an opening inside the gap (03:30) is moved on by the gap."""
    cal = calendar({"sat": "22:00-06:00"})
    start = datetime(2026, 3, 28, 20, 0, tzinfo=UTC)  # 22:00 EET
    assert cal.window_at(start + timedelta(hours=1)) == (
        start,
        datetime(2026, 3, 29, 3, 0, tzinfo=UTC),  # 06:00 EEST
    )
    gap = calendar({"sun": "03:30-05:00"})
    assert gap.next_opening(datetime(2026, 3, 28, 22, 0, tzinfo=UTC)) == datetime(
        2026, 3, 29, 1, 30, tzinfo=UTC
    )  # 04:30 EEST


def test_dst_fall_back_day() -> None:
    """Kyiv 2026-10-25: 04:00 → 03:00. A Sunday 02:00-05:00 window lasts 4
    real hours, and 09:00 local is 07:00 UTC (winter time)."""
    cal = calendar({"sun": ["02:00-05:00", "09:00-10:00"]})
    window = cal.window_at(datetime(2026, 10, 25, 0, 30, tzinfo=UTC))
    assert window is not None
    assert window[1] - window[0] == timedelta(hours=4)
    assert cal.next_opening(datetime(2026, 10, 25, 5, 0, tzinfo=UTC)) == datetime(
        2026, 10, 25, 7, 0, tzinfo=UTC
    )


def test_public_holidays_and_closed_dates() -> None:
    """Poland: 2026-11-11 (Wednesday) is Independence Day; 2026-11-12 is an
    extra closed date. A miss on the evening of the 10th waits for the 13th."""
    warsaw = ZoneInfo("Europe/Warsaw")
    cal = calendar(zone=warsaw, closed=ClosedDays("PL", [date(2026, 11, 12)]))
    assert not cal.is_open(local(warsaw, 2026, 11, 11, 12, 0))
    assert not cal.is_open(local(warsaw, 2026, 11, 12, 12, 0))
    assert cal.next_opening(local(warsaw, 2026, 11, 10, 19, 0)) == local(warsaw, 2026, 11, 13, 9, 0)
    assert ClosedDays("PL").name(date(2026, 11, 11))


def test_no_opening_at_all_is_none() -> None:
    cal = calendar({})
    assert cal.next_opening(datetime(2026, 11, 23, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("hours", "words"),
    [
        ({"mon": "9-18"}, "mon: '9-18' is not a range"),
        ({"mon": "09:00-09:00"}, "empty range"),
        ({"mon": "25:00-26:00"}, "hours go 00..23"),
        ({"moonday": "09:00-18:00"}, "'moonday' is not a weekday"),
        ({"tue": 9}, "tue: expected"),
        ({"wed": ["09:00-12:00", 5]}, "wed: 5 is not a string"),
    ],
)
def test_bad_working_hours_are_named(hours: dict[str, object], words: str) -> None:
    with pytest.raises(HoursError, match=words):
        parse_working_hours(hours)
    with pytest.raises(ValidationError) as info:
        Settings(callbacks={"working_hours": hours})
    text = str(info.value)
    assert "callbacks.working_hours" in text and words.split(":")[0] in text
    assert '"HH:MM-HH:MM"' in text


def test_settings_name_the_callback_problems() -> None:
    cases: list[tuple[dict[str, object], str]] = [
        ({"timezone": "Mars/Olympus"}, "callbacks.timezone"),
        ({"holidays_country": "XX"}, "callbacks.holidays_country"),
        ({"default_region": "QQ"}, "callbacks.default_region"),
        ({"allowed_number_patterns": ["(+"]}, "callbacks.allowed_number_patterns"),
        ({"dial_template": "9{nat}"}, "callbacks.dial_template"),
        ({"dial_template": "9"}, "callbacks.dial_template"),
        ({"enabled": True, "default_region": "UA"}, "targets"),
        ({"enabled": True, "targets": ["201"]}, "default_region"),
        ({"on_missed_call": "ignore"}, "callbacks.on_missed_call"),
    ]
    for callbacks, name in cases:
        with pytest.raises(ValidationError) as info:
            Settings(callbacks=callbacks)
        assert name in str(info.value), (callbacks, str(info.value))


# -- numbers -----------------------------------------------------------------


def rules(patterns: list[str] | None = None, template: str = "{e164}") -> NumberRules:
    return NumberRules("UA", patterns if patterns is not None else default_patterns("UA"), template)


def test_national_number_becomes_e164_and_dials_by_template() -> None:
    number = rules(template="9{national}").classify("044 123-45-67")
    assert isinstance(number, ClientNumber)
    assert number.number == "+380441234567"
    assert number.dial("9{national}") == "90441234567"
    assert number.dial("{e164}") == "+380441234567"
    assert number.dial("{raw}") == "0441234567"
    same = (rules().classify("+38 (044) 123 45 67"), rules().classify("0441234567"))
    assert [n.number for n in same] == ["+380441234567", "+380441234567"]


def test_anonymous_and_garbage_are_refused_with_a_reason() -> None:
    for text in (None, "", "anonymous", "Restricted"):
        refused = rules().classify(text)
        assert isinstance(refused, RefusedNumber) and refused.reason == "anonymous"
    for text in ("'; DROP TABLE", "12ab34", "sip:evil@x;maddr=1"):
        refused = rules().classify(text)
        assert isinstance(refused, RefusedNumber) and refused.reason == "unparseable", text


def test_default_patterns_keep_calls_in_the_country() -> None:
    """The quick start's guard: a Kyiv office never rings Germany or a
    premium-rate line, whatever the caller ID claims."""
    foreign = rules().classify("+4930123456")
    assert isinstance(foreign, RefusedNumber) and foreign.reason == "not_allowed"
    assert foreign.number == "+4930123456"
    premium = NumberRules("GB", [r"^\+44[0-9]+$"]).classify("09098790000")
    assert isinstance(premium, RefusedNumber) and premium.reason == "premium_rate"


def test_internal_extension_kept_verbatim_only_when_allowed() -> None:
    refused = rules().classify("201")
    assert isinstance(refused, RefusedNumber) and refused.reason == "not_allowed"
    allowed = rules([*default_patterns("UA"), r"^2[0-9]{2}$"]).classify("201")
    assert isinstance(allowed, ClientNumber)
    assert (allowed.number, allowed.e164, allowed.dial("9{national}")) == ("201", False, "9201")


def test_patterns_match_the_whole_number() -> None:
    """`\\+380` as a pattern does not allow '+380' followed by anything."""
    refused = rules([r"\+380"]).classify("+380441234567")
    assert isinstance(refused, RefusedNumber) and refused.reason == "not_allowed"


# -- retry policy ------------------------------------------------------------

NOW = local(KYIV, 2026, 11, 23, 10, 0)  # Monday 10:00


def policy(**changes: float) -> CallbackPolicy:
    params: dict[str, float] = {
        "first_delay_s": 60,
        "max_attempts": 3,
        "retry_interval_s": 600,
        "max_calls_per_number_per_day": 3,
    }
    params.update(changes)
    return CallbackPolicy(
        calendar(),
        RetryRules(
            first_delay_s=params["first_delay_s"],
            max_attempts=int(params["max_attempts"]),
            retry_interval_s=params["retry_interval_s"],
            max_calls_per_number_per_day=int(params["max_calls_per_number_per_day"]),
        ),
    )


def test_first_due_is_first_delay_after_the_miss_inside_hours() -> None:
    nxt = policy().first_due(NOW - timedelta(seconds=10), NOW)
    assert nxt.state == "queued" and nxt.due_at == NOW + timedelta(seconds=50)
    night = local(KYIV, 2026, 11, 23, 22, 0)
    assert policy().first_due(night, night).due_at == local(KYIV, 2026, 11, 24, 9, 0)
    later = NOW + timedelta(hours=2)
    assert policy().first_due(NOW, NOW, not_before=later).due_at == later


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome.CLIENT_BUSY,
        Outcome.CLIENT_NO_ANSWER,
        Outcome.MANAGER_LATER,
        Outcome.NO_KEY,
        Outcome.FAILED,
    ],
)
def test_retry_later_outcomes(outcome: Outcome) -> None:
    nxt = policy().after_attempt(
        AttemptResult(outcome), round_=1, now=NOW, dialled=("201",), calls_today=1
    )
    assert (nxt.state, nxt.round, nxt.due_at) == ("queued", 2, NOW + timedelta(seconds=600))
    assert nxt.reason == outcome.value


def test_final_outcomes() -> None:
    done = policy().after_attempt(
        AttemptResult(Outcome.COMPLETED), round_=1, now=NOW, dialled=("201",), calls_today=1
    )
    assert done.state == "completed"
    closed = policy().after_attempt(
        AttemptResult(Outcome.NOT_NEEDED), round_=2, now=NOW, dialled=("201",), calls_today=0
    )
    assert closed.state == "not_needed"


def test_no_manager_tries_the_next_target_now_then_later() -> None:
    p = policy()
    partly = AttemptResult(Outcome.NO_MANAGER, rang=(("201", 480),))
    now_next = p.after_attempt(partly, round_=1, now=NOW, dialled=("201", "202"), calls_today=0)
    assert (now_next.state, now_next.round, now_next.due_at) == ("queued", 1, NOW)
    assert now_next.targets == ("202",)
    all_rang = AttemptResult(Outcome.NO_MANAGER, rang=(("202", 486),))
    later = p.after_attempt(all_rang, round_=1, now=NOW, dialled=("202",), calls_today=0)
    assert (later.state, later.round, later.targets) == ("queued", 2, None)
    assert later.due_at == NOW + timedelta(seconds=600)


def test_max_attempts_fails_the_job() -> None:
    nxt = policy().after_attempt(
        AttemptResult(Outcome.CLIENT_BUSY), round_=3, now=NOW, dialled=("201",), calls_today=1
    )
    assert (nxt.state, nxt.reason) == ("failed", "max_attempts")


def test_retry_after_closing_time_waits_for_the_next_opening() -> None:
    evening = local(KYIV, 2026, 11, 23, 17, 55)
    nxt = policy().after_attempt(
        AttemptResult(Outcome.CLIENT_NO_ANSWER),
        round_=1,
        now=evening,
        dialled=("201",),
        calls_today=1,
    )
    assert nxt.due_at == local(KYIV, 2026, 11, 24, 9, 0)


def test_daily_cap_moves_the_next_round_to_tomorrow() -> None:
    p = policy(max_attempts=10, max_calls_per_number_per_day=2)
    nxt = p.after_attempt(
        AttemptResult(Outcome.CLIENT_BUSY), round_=2, now=NOW, dialled=("201",), calls_today=2
    )
    assert (nxt.reason, nxt.due_at) == ("daily_cap", local(KYIV, 2026, 11, 24, 9, 0))
    before = p.before_dial(NOW, round_=3, calls_today=2)
    assert before is not None and before.due_at == local(KYIV, 2026, 11, 24, 9, 0)
    assert p.before_dial(NOW, round_=3, calls_today=1) is None
    closed = p.before_dial(local(KYIV, 2026, 11, 28, 12, 0), round_=1, calls_today=0)
    assert closed is not None and closed.reason == "closed"
    assert closed.due_at == local(KYIV, 2026, 11, 30, 9, 0)


def test_a_calendar_that_never_opens_fails_rather_than_waits_forever() -> None:
    p = CallbackPolicy(calendar({}), RetryRules())
    assert p.first_due(NOW, NOW).state == "failed"


def test_interrupted_claim_goes_to_a_later_round() -> None:
    nxt = policy().after_interruption(1, NOW)
    assert (nxt.state, nxt.round, nxt.reason) == ("queued", 2, "interrupted")
    assert nxt.due_at is not None and nxt.due_at > NOW
