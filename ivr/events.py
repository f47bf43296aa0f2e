"""What the call tells the menu. Each event is a fact that already happened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

#: The sixteen DTMF keys of RFC 4733 events 0-15. Anything else is not a key.
KEYPAD = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class Start:
    """The call is answered and media flows: begin the menu."""


@dataclass(frozen=True, slots=True)
class Digit:
    """The manager pressed `key` (one of `KEYPAD`; other strings are ignored)."""

    key: str


@dataclass(frozen=True, slots=True)
class PromptFinished:
    """The most recent `Play` ran to its end.

    Not sent for a playback that a `StopPlayback` or a newer `Play` cut short:
    the menu cannot tell one playback from another, so a late report would be
    taken for the prompt playing now.
    """


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The timer started by `StartTimer(..., token)` expired."""

    token: int


@dataclass(frozen=True, slots=True)
class Hangup:
    """The far end hung up (BYE received, media lost, call torn down)."""


@dataclass(frozen=True, slots=True)
class Saved:
    """The `Save` the menu asked for is durable (committed, or safely spooled)."""


@dataclass(frozen=True, slots=True)
class SaveFailed:
    """The `Save` the menu asked for could not be made durable anywhere."""


Event: TypeAlias = Start | Digit | PromptFinished | TimerFired | Hangup | Saved | SaveFailed
