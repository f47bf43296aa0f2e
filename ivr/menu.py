# The post-call menu as a sans-IO state machine.
#
# Rules this module keeps
# -----------------------
# 1. It never does I/O and never reads a clock: no sockets, no asyncio, no
#    threads, no time calls, no sleeps. Everything that happens reaches it as an
#    event passed to `Menu.handle`, and everything it wants done leaves as a
#    list of actions. Time exists only as `TimerFired` for a timer it asked for.
#    Why: the same object then runs under the asyncio call session, under the
#    call simulator and under unit tests that play a whole call in
#    microseconds, and every run of the same events gives the same actions.
# 2. `handle` never raises. An event that means nothing in the current state
#    (a stray key, a late timer, a second `Start`) returns `[]`. A phone line
#    delivers plenty of those; none of them may end a call.
# 3. `Save` is emitted exactly once per call, and before any `HangUp`. The
#    menu then waits (`SAVING`) for the call to report `Saved()` (durable) or
#    `SaveFailed()`, and only then says "saved" (or "not_saved"): a manager
#    never hears "saved" for an entry that is not stored. After a hang-up the
#    menu is `DONE` and every event returns `[]`.
# 4. Between `Start` and `Save` exactly one of "a prompt is playing" and "a
#    timer is armed" holds, so the call never waits for nothing (while
#    `SAVING`, the call waits for its own save, and plays a hold tone if the
#    database keeps it waiting). A timer is
#    armed only while collecting an entry or awaiting the confirmation; leaving
#    those states by a key emits `CancelTimer`.
# 5. Timer tokens only grow; `TimerFired` with any token but the armed one is
#    stale and ignored.
# 6. `PromptFinished` means the most recent `Play` ran to its end. The caller
#    does not report a playback that `StopPlayback` or a newer `Play` cut short.
#
# Theory of operation
# -------------------
# `Start` plays the greeting and the first question (category code, or value
# when categories are not asked). While a question plays, a key barges in:
# `StopPlayback`, then the key is taken as the first key of the entry. When the
# question has played, a timer gives the manager `first_digit_timeout_s` for a
# first key, then `digit_timeout_s` after each key. The terminator, or a timeout
# after at least one key, ends the entry; a timeout before any key is "no
# input". `*` as the first key of an entry throws the entry away and asks again.
#
# A rejected entry (no input, unknown code, invalid value) uses one attempt
# and asks the same question again after saying why. Attempts are counted per
# call, not per question: the call has `max_attempts` tries in all, and the
# failure of the last one ends the menu with "not_saved" and an incomplete
# result. Confirm "2" (enter again) also uses an attempt; so the menu is
# bounded however the manager keys, and `MenuResult.attempts` (1 on the happy
# path) never exceeds `max_attempts`. Restarts with `*` are free for the first
# `3 * max_attempts` of a call; after that each one is charged as an attempt,
# which keeps a stuck `*` key from looping forever.
#
# When every question has an answer the bot reads it back (category code
# digit by digit, then the value or "no value"), and asks to confirm: "1"
# saves, "2" clears both answers and asks from the first question again, any
# other key or silence asks to confirm again; the question is asked at most
# `max_attempts` times, then the menu ends incomplete, keeping the answers.
# Without confirmation the read-back ends with "saved" directly.
#
# When the outcome is decided the menu emits `Save` and waits for `Saved()`;
# then it plays the goodbye ("saved" / "not_saved", after the read-back when
# there is no confirmation step), which keys do not interrupt, and `HangUp`
# follows when it has played. `SaveFailed()` plays "not_saved" instead. A
# hang-up after `Save` changes nothing (the outcome is already being stored).
# A hang-up before it saves an incomplete result with what had been accepted.
#
# Keys: 0-9, `*` and the terminator drive the menu; A-D (when not the
# terminator) do nothing, not even barge in, but like every keypad key they are
# kept in the raw `digits` log. Strings that are not keypad keys are ignored
# and not logged.

"""The post-call menu: `Menu(config).handle(event) -> list[Action]` (see the
comment at the top of this module for its rules and theory of operation)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from types import MappingProxyType

from ivr.actions import (
    Action,
    CancelTimer,
    HangUp,
    MenuResult,
    Play,
    Save,
    StartTimer,
    Status,
    StopPlayback,
)
from ivr.entry import Category, parse_value, spell, spell_value
from ivr.events import (
    KEYPAD,
    Digit,
    Event,
    Hangup,
    PromptFinished,
    Saved,
    SaveFailed,
    Start,
    TimerFired,
)

#: Free `*` restarts per call, per allowed attempt (see the theory above).
RESTARTS_PER_ATTEMPT = 3


@dataclass(frozen=True, slots=True)
class MenuConfig:
    """How the menu behaves; one per process, shared by every call."""

    categories: Mapping[str, Category]  # by code
    ask_category: bool = True
    ask_value: bool = True
    confirm: bool = True
    terminator: str = "#"
    first_digit_timeout_s: float = 8.0
    digit_timeout_s: float = 4.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        # A bad configuration is a start-up error, not something to discover
        # mid-call when `handle` must not raise.
        if not (self.ask_category or self.ask_value):
            raise ValueError("at least one of ask_category and ask_value must be true")
        if self.ask_category and not self.categories:
            raise ValueError("ask_category needs at least one category")
        # Each Category checked its own code, name and value when it was built.
        for code, category in self.categories.items():
            if code != category.code:
                raise ValueError(f"category {category.code!r} is filed under {code!r}")
        # `*` is the decimal point and the restart key, and digits are entries.
        if self.terminator not in ("#", "A", "B", "C", "D"):
            raise ValueError(f"terminator must be '#' or one of A-D, not {self.terminator!r}")
        if self.first_digit_timeout_s <= 0 or self.digit_timeout_s <= 0:
            raise ValueError("timeouts must be positive")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        # Frozen means frozen: the caller's dict may not change under a call.
        object.__setattr__(self, "categories", MappingProxyType(dict(self.categories)))


class State(Enum):
    IDLE = "idle"  # before Start
    PROMPTING_ENTRY = "prompting_entry"  # a question plays; a key barges in
    COLLECTING_ENTRY = "collecting_entry"  # keys of an entry; timer armed
    PROMPTING_CONFIRM = "prompting_confirm"  # read-back and/or "confirm" plays
    AWAITING_CONFIRM = "awaiting_confirm"  # "1" or "2"; timer armed
    SAVING = "saving"  # outcome decided, Save emitted; awaiting Saved / SaveFailed
    CLOSING = "closing"  # stored: "saved" / "not_saved" plays, then HangUp
    DONE = "done"  # nothing more happens


class Question(Enum):
    """What the current entry answers; the value is the prompt that asks it."""

    CATEGORY = "ask_category"
    VALUE = "ask_value"


class Menu:
    def __init__(self, config: MenuConfig) -> None:
        self._config = config
        self._questions = tuple(
            question
            for question, asked in (
                (Question.CATEGORY, config.ask_category),
                (Question.VALUE, config.ask_value),
            )
            if asked
        )
        self._menu_keys = frozenset("0123456789*") | {config.terminator}
        self._state = State.IDLE
        self._question = self._questions[0]
        self._entry = ""  # keys of the entry being collected
        self._keys: list[str] = []  # the raw keypad log
        self._attempts = 0
        self._restarts = 0
        self._confirm_asks = 0
        self._category: Category | None = None
        self._value: Decimal | None = None
        self._outcome: Status = "incomplete"  # decided on entering SAVING
        self._goodbye_lead: tuple[str, ...] = ()  # the read-back said before "saved"
        self._tokens = itertools.count(1)
        self._timer: int | None = None  # token of the armed timer
        self._result: MenuResult | None = None

    @property
    def state(self) -> State:
        return self._state

    @property
    def result(self) -> MenuResult | None:
        """What was saved, once it was."""
        return self._result

    @property
    def finished(self) -> bool:
        return self._state is State.DONE

    def handle(self, event: Event) -> list[Action]:
        if (
            isinstance(event, Digit)
            and event.key in KEYPAD
            and self._state not in (State.IDLE, State.SAVING, State.CLOSING, State.DONE)
        ):
            self._keys.append(event.key)

        match self._state, event:
            # -- in any state ------------------------------------------------
            case State.DONE, _:
                return []
            case State.SAVING | State.CLOSING, Hangup():
                self._state = State.DONE  # the outcome is stored or being stored
                return []
            case _, Hangup():
                return self._save(hung_up=True)  # the line is gone: no HangUp
            case _, TimerFired(token=token) if token != self._timer:
                return []  # stale: replaced or cancelled
            case _, Digit(key=key) if key not in self._menu_keys:
                return []  # A-D, or not a key at all
            # -- the menu -------------------------------------------------------
            case State.IDLE, Start():
                self._attempts = 1
                return self._ask(lead=("greeting",))
            case State.PROMPTING_ENTRY, PromptFinished():
                return self._arm(State.COLLECTING_ENTRY, self._config.first_digit_timeout_s)
            case State.PROMPTING_ENTRY, Digit(key=key):
                return [StopPlayback(), *self._collect(key)]
            case State.COLLECTING_ENTRY, Digit(key=key):
                return self._collect(key)
            case State.COLLECTING_ENTRY, TimerFired():
                self._timer = None
                return self._submit() if self._entry else self._retry("no_input")
            case State.PROMPTING_CONFIRM, PromptFinished():
                return self._arm(State.AWAITING_CONFIRM, self._config.first_digit_timeout_s)
            case State.PROMPTING_CONFIRM, Digit(key=key):
                return [StopPlayback(), *self._answer(key)]
            case State.AWAITING_CONFIRM, Digit(key=key):
                return self._answer(key)
            case State.AWAITING_CONFIRM, TimerFired():
                self._timer = None
                return self._ask_confirm_again()
            case State.SAVING, Saved():
                self._state = State.CLOSING
                word = "saved" if self._outcome == "confirmed" else "not_saved"
                return [Play((*self._goodbye_lead, word))]
            case State.SAVING, SaveFailed():
                self._state = State.CLOSING
                return [Play(("not_saved",))]
            case State.CLOSING, PromptFinished():
                self._state = State.DONE
                return [HangUp()]
            case _:
                return []  # not for this state (keys during the goodbye, a second Start…)

    # -- entries ------------------------------------------------------------

    def _collect(self, key: str) -> list[Action]:
        if key == self._config.terminator:
            return self._submit()
        if key == "*" and not self._entry:
            return self._restart()
        self._entry += key
        return self._arm(State.COLLECTING_ENTRY, self._config.digit_timeout_s)

    def _submit(self) -> list[Action]:
        entry, self._entry = self._entry, ""
        actions = self._disarm()
        if self._question is Question.CATEGORY:
            if not entry:  # the terminator alone: there is no default category
                return [*actions, *self._retry("no_input")]
            category = self._config.categories.get(entry)
            if category is None:
                return [*actions, *self._retry("unknown_category")]
            self._category = category
            # Not asked for a value: the category's configured value is the value.
            self._value = None if self._config.ask_value else category.value
        elif entry:
            value = parse_value(entry)
            if value is None:
                return [*actions, *self._retry("invalid_value")]
            self._value = value
        else:
            self._value = self._category.value if self._category else None
        return [*actions, *self._next_question()]

    def _restart(self) -> list[Action]:
        actions = self._disarm()
        if self._restarts < RESTARTS_PER_ATTEMPT * self._config.max_attempts:
            self._restarts += 1
            return [*actions, *self._ask()]
        return [*actions, *self._retry()]

    def _retry(self, *why: str) -> list[Action]:
        """The entry failed: use an attempt to ask again, or end if none is left."""
        if self._attempts >= self._config.max_attempts:
            return self._close("incomplete")
        self._attempts += 1
        return self._ask(lead=why)

    def _next_question(self) -> list[Action]:
        following = self._questions.index(self._question) + 1
        if following < len(self._questions):
            self._question = self._questions[following]
            return self._ask()
        return self._read_back()

    def _ask(self, lead: tuple[str, ...] = ()) -> list[Action]:
        self._state = State.PROMPTING_ENTRY
        self._entry = ""
        return [Play((*lead, self._question.value))]

    # -- read-back and confirmation -----------------------------------------

    def _read_back(self) -> list[Action]:
        said: tuple[str, ...] = ()
        if self._config.ask_category and self._category is not None:
            said += ("you_entered_category", *spell(self._category.code))
        if self._config.ask_value:
            value = ("no_value",) if self._value is None else spell_value(self._value)
            said += ("you_entered_value", *value)
        if not self._config.confirm:
            return self._close("confirmed", lead=said)
        self._state = State.PROMPTING_CONFIRM
        self._confirm_asks = 1
        return [Play((*said, "confirm"))]

    def _answer(self, key: str) -> list[Action]:
        actions = self._disarm()
        if key == "1":
            return [*actions, *self._close("confirmed")]
        if key == "2":
            return [*actions, *self._start_over()]
        return [*actions, *self._ask_confirm_again()]

    def _start_over(self) -> list[Action]:
        if self._attempts >= self._config.max_attempts:
            return self._close("incomplete")  # keeps the answers for the record
        self._attempts += 1
        self._category = self._value = None
        self._question = self._questions[0]
        return self._ask()

    def _ask_confirm_again(self) -> list[Action]:
        if self._confirm_asks >= self._config.max_attempts:
            return self._close("incomplete")
        self._confirm_asks += 1
        self._state = State.PROMPTING_CONFIRM
        return [Play(("confirm",))]

    # -- the end ----------------------------------------------------------------

    def _close(self, outcome: Status, lead: tuple[str, ...] = ()) -> list[Action]:
        self._outcome = outcome
        self._goodbye_lead = lead
        return self._save(hung_up=False)

    def _save(self, *, hung_up: bool) -> list[Action]:
        self._result = MenuResult(
            status=self._outcome if not hung_up else "incomplete",
            category=self._category,
            value=self._value,
            digits="".join(self._keys),
            attempts=self._attempts,
        )
        self._state = State.DONE if hung_up else State.SAVING
        self._timer = None
        return [Save(self._result)]

    # -- the timer ----------------------------------------------------------

    def _arm(self, state: State, seconds: float) -> list[Action]:
        self._state = state
        self._timer = next(self._tokens)
        return [StartTimer(seconds, self._timer)]

    def _disarm(self) -> list[Action]:
        if self._timer is None:
            return []
        self._timer = None
        return [CancelTimer()]
