"""A pretend call around `ivr.Menu`: it remembers the armed timer token so tests
can fire it, and checks the menu's invariants after every event."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from unittest.mock import ANY

import pytest

from ivr import (
    PROMPTS,
    Action,
    CancelTimer,
    Category,
    Digit,
    Event,
    HangUp,
    Hangup,
    Menu,
    MenuConfig,
    Play,
    PromptFinished,
    Save,
    Saved,
    Start,
    StartTimer,
    StopPlayback,
    TimerFired,
)

#: The menu's timers with the default config: waiting for the first key of an
#: entry, and for the next key (the token is whatever the menu issued).
FIRST = StartTimer(8.0, ANY)
NEXT = StartTimer(4.0, ANY)

CATEGORIES = {
    "1": Category("1", "sale", None),
    "2": Category("2", "asked for the address", Decimal("100")),
    "3": Category("3", "existing order", None),
    "42": Category("42", "spam", Decimal("0.50")),
}


class SaveOf:
    """Equal to any `Save` (or to one with this `status`): the goodbye tests check
    *when* Save comes; `Call.saved` checks what it holds."""

    def __init__(self, status: str | None = None) -> None:
        self.status = status

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Save) and self.status in (None, other.result.status)

    def __repr__(self) -> str:
        return f"SaveOf({self.status!r})"


class Call:
    """Plays the app's side: one player, one timer slot, actions performed in order.

    A `Save` is answered with `Saved()` at once (the journal committed), and
    the menu's reply is appended to the actions returned, unless the call was
    made with `auto_store=False` (then the test sends `stored()` itself).
    """

    def __init__(self, auto_store: bool = True, **config: object) -> None:
        self.auto_store = auto_store
        self.categories = CATEGORIES
        self.menu = Menu(MenuConfig(CATEGORIES, **config))  # type: ignore[arg-type]
        self.playing = False
        self.token: int | None = None
        self.last_token = 0
        self.saves: list[Save] = []
        self.hung_up = False

    def send(self, event: Event) -> list[Action]:
        was_done = self.menu.finished
        if isinstance(event, PromptFinished):
            self.playing = False
        actions = self.menu.handle(event)
        if was_done:
            assert actions == []
        if isinstance(event, TimerFired) and event.token == self.token:
            self.token = None
        for action in actions:
            self._perform(action)
        if self.auto_store and self.menu.state.value == "saving" and not self.hung_up:
            actions = [*actions, *self.send(Saved())]
        if isinstance(event, Hangup) or self.menu.finished:
            assert self.menu.finished
            assert len(self.saves) == 1
        elif self.menu.state.value not in ("idle", "saving"):
            # Never waiting for nothing: exactly one of prompt / timer.
            assert self.playing != (self.token is not None), (self.playing, self.token)
        return actions

    def _perform(self, action: Action) -> None:
        assert not self.hung_up
        match action:
            case Play(prompts=prompts):
                assert prompts and set(prompts) <= PROMPTS, prompts
                self.playing = True
            case StopPlayback():
                assert self.playing
                self.playing = False
            case StartTimer(token=token):
                assert token > self.last_token
                self.last_token = token
                self.token = token
            case CancelTimer():
                assert self.token is not None
                self.token = None
            case Save():
                self.saves.append(action)
                self.playing = False
            case HangUp():
                assert self.saves
                self.hung_up = True

    # -- shorthands ---------------------------------------------------------

    def start(self) -> list[Action]:
        return self.send(Start())

    def played(self) -> list[Action]:
        assert self.playing, "nothing is playing"
        return self.send(PromptFinished())

    def press(self, key: str) -> list[Action]:
        return self.send(Digit(key))

    def keys(self, keys: str) -> list[list[Action]]:
        return [self.press(key) for key in keys]

    def timeout(self) -> list[Action]:
        assert self.token is not None, "no timer armed"
        return self.send(TimerFired(self.token))

    def stored(self) -> list[Action]:
        return self.send(Saved())

    def hangup(self) -> list[Action]:
        return self.send(Hangup())

    @property
    def saved(self) -> Save:
        (save,) = self.saves
        return save


@pytest.fixture
def call() -> Callable[..., Call]:
    return Call
