"""When to call a missed client back, and what an attempt's outcome means for
the job: a pure module, like `ivr/`.

Rules it keeps:

- A job is first due `first_delay_s` after the miss (never before the
  caller's `not_before`), moved to the next opening of the working calendar.
- After an attempt (`Outcome` from the dialler):
    completed                    → done (`completed`)
    manager pressed 3            → done (`not_needed`)
    no manager answered          → the targets not yet rung, now, in the same
                                   round; when all have rung, the next round
                                   `retry_interval_s` later
    client busy / no answer,
    manager pressed 2 / no key,
    failed                       → the next round `retry_interval_s` later
  A round past `max_attempts` ends the job `failed`.
- `max_calls_per_number_per_day` calls to one client in one local day push
  the next round to the next day's first opening.
- A calendar that never opens fails the job rather than keeping it forever.

Never: I/O, reading a clock (`now` is an argument), touching the queue. The
scheduler applies what this returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal

from voicebot.callbacks.attempt import AttemptResult, Outcome
from voicebot.callbacks.calendar import WorkingCalendar

JobState = Literal[
    "queued", "dialling", "completed", "not_needed", "failed", "cancelled", "skipped"
]
OPEN_STATES: tuple[JobState, ...] = ("queued", "dialling")
CLOSED_STATES: tuple[JobState, ...] = ("completed", "not_needed", "failed", "cancelled", "skipped")

#: Outcomes after which the client was never rung in manager-first order.
CLIENT_NOT_RUNG = frozenset(
    {Outcome.NO_MANAGER, Outcome.MANAGER_LATER, Outcome.NO_KEY, Outcome.NOT_NEEDED}
)


@dataclass(frozen=True, slots=True)
class RetryRules:
    first_delay_s: float = 60.0
    max_attempts: int = 3
    retry_interval_s: float = 600.0
    max_calls_per_number_per_day: int = 3


@dataclass(frozen=True, slots=True)
class Next:
    """What becomes of a job."""

    state: JobState
    #: When queued: when it is due.
    due_at: datetime | None = None
    #: The round the next dial belongs to (the whisper's "attempt N").
    round: int = 1
    #: The targets of the next dial, when not all of them (the rest of a round).
    targets: tuple[str, ...] | None = None
    #: Why, in one word: the outcome, max_attempts, daily_cap, closed, ...
    reason: str = ""


def client_rung(result: AttemptResult, order: str) -> bool:
    """Whether this attempt called the client (what the daily cap counts)."""
    if order == "client_first":
        return True
    return result.outcome not in CLIENT_NOT_RUNG


class CallbackPolicy:
    def __init__(self, calendar: WorkingCalendar, rules: RetryRules) -> None:
        self.calendar = calendar
        self.rules = rules

    # -- opening hours -----------------------------------------------------

    def opening_from(self, at: datetime, reason: str, round_: int = 1) -> Next:
        """Queued at the first open instant from `at`; failed when none comes."""
        opening = self.calendar.next_opening(at)
        if opening is None:
            return Next("failed", round=round_, reason="no_working_hours")
        return Next("queued", due_at=opening.astimezone(UTC), round=round_, reason=reason)

    def day_bounds(self, at: datetime) -> tuple[datetime, datetime]:
        """The local day (`calendar.zone`) holding `at`, as UTC instants."""
        zone = self.calendar.zone
        day = at.astimezone(zone).date()
        start = datetime.combine(day, time(0), tzinfo=zone)
        end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
        return start.astimezone(UTC), end.astimezone(UTC)

    def next_day(self, at: datetime) -> datetime:
        return self.day_bounds(at)[1]

    # -- decisions -----------------------------------------------------------

    def first_due(
        self, missed_at: datetime, now: datetime, not_before: datetime | None = None
    ) -> Next:
        """A new job: when its first attempt is due."""
        due = max(missed_at + timedelta(seconds=self.rules.first_delay_s), now)
        if not_before is not None:
            due = max(due, not_before)
        return self.opening_from(due, "scheduled")

    def before_dial(self, now: datetime, round_: int, calls_today: int) -> Next | None:
        """A claimed job about to be dialled: None to go ahead, else when to
        try instead (closed now, or the client's calls for today used up)."""
        if calls_today >= self.rules.max_calls_per_number_per_day:
            return self.opening_from(self.next_day(now), "daily_cap", round_)
        if not self.calendar.is_open(now):
            return self.opening_from(now, "closed", round_)
        return None

    def after_attempt(
        self,
        result: AttemptResult,
        *,
        round_: int,
        now: datetime,
        dialled: Sequence[str],
        calls_today: int,
    ) -> Next:
        """The job after one attempt of round `round_` that rang `dialled`.
        `calls_today` counts this attempt if it rang the client."""
        outcome = result.outcome
        if outcome is Outcome.COMPLETED:
            return Next("completed", round=round_, reason=outcome.value)
        if outcome is Outcome.NOT_NEEDED:
            return Next("not_needed", round=round_, reason=outcome.value)
        if outcome is Outcome.NO_MANAGER:
            rang = {target for target, _ in result.rang}
            rest = tuple(target for target in dialled if target not in rang)
            if rang and rest:
                # Some targets were never rung (the dialler stopped early):
                # they are this round's, now.
                return Next(
                    "queued",
                    due_at=now.astimezone(UTC),
                    round=round_,
                    targets=rest,
                    reason=outcome.value,
                )
        next_round = round_ + 1
        if next_round > self.rules.max_attempts:
            return Next("failed", round=round_, reason="max_attempts")
        later = now + timedelta(seconds=self.rules.retry_interval_s)
        if calls_today >= self.rules.max_calls_per_number_per_day:
            later = max(later, self.next_day(now))
            return self.opening_from(later, "daily_cap", next_round)
        return self.opening_from(later, outcome.value, next_round)

    def after_interruption(self, round_: int, now: datetime) -> Next:
        """A claim whose scheduler died mid-attempt (its lease ran out): the
        call may have gone out, so never again at once; the next round later."""
        next_round = round_ + 1
        if next_round > self.rules.max_attempts:
            return Next("failed", round=round_, reason="max_attempts")
        later = now + timedelta(seconds=self.rules.retry_interval_s)
        return self.opening_from(later, "interrupted", next_round)
