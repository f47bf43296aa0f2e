"""What the menu asks the call to do, and what it finally saves."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal, TypeAlias

from ivr.entry import Category

#: Every prompt name the menu may put in a `Play` (the contract with `prompts/`).
PROMPTS = frozenset(
    {
        "greeting",
        "ask_category",
        "ask_value",
        "unknown_category",
        "no_input",
        "invalid_value",
        "you_entered_category",
        "you_entered_value",
        "no_value",
        "confirm",
        "saved",
        "not_saved",
        "point",
        *(f"digit_{n}" for n in range(10)),
    }
)

Status: TypeAlias = Literal["confirmed", "incomplete"]


@dataclass(frozen=True, slots=True)
class MenuResult:
    """The outcome of one call's menu, saved exactly once.

    `confirmed`: the manager confirmed the read-back (or confirmation is off and
    every entry was accepted). `incomplete`: anything else; `category` and
    `value` then hold what had been accepted so far. `digits` is the raw keypad
    log, every key pressed from `Start` to the save, in order, meaningful or
    not (A-D included). `attempts` counts the tries used (see ivr.menu).
    """

    status: Status
    category: Category | None
    value: Decimal | None
    digits: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Play:
    """Play these prompts back to back, replacing whatever is playing."""

    prompts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StopPlayback:
    """Stop the prompt playing now (barge-in). No `PromptFinished` for it."""


@dataclass(frozen=True, slots=True)
class StartTimer:
    """Arm the call's one timer: `TimerFired(token)` after `seconds`.

    Replaces any timer already armed. Tokens only grow, so the menu can tell a
    late expiry of a replaced timer from the one it is waiting for.
    """

    seconds: float
    token: int


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Disarm the call's timer, if armed."""


@dataclass(frozen=True, slots=True)
class Save:
    """Store `result`. Comes exactly once per call, before any `HangUp`.

    The call answers with `Saved()` once `result` is durable, or `SaveFailed()`;
    the menu says "saved" only after `Saved()`."""

    result: MenuResult


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call (send BYE)."""


Action: TypeAlias = Play | StopPlayback | StartTimer | CancelTimer | Save | HangUp
