"""Every state × every event: the actions and the state that follows.

Each row drives a fresh call to a state, sends one event and checks the exact
actions. `timer` is a TimerFired with the latest token issued (the armed one in
states that wait on a timer, a cancelled or unissued one elsewhere).
"""

from decimal import Decimal

import pytest

from ivr import (
    CancelTimer,
    Category,
    Digit,
    HangUp,
    Hangup,
    MenuResult,
    Play,
    PromptFinished,
    Save,
    Saved,
    SaveFailed,
    Start,
    State,
    StopPlayback,
    TimerFired,
)
from tests.ivr.conftest import FIRST, NEXT

S = State
CAT3 = ("3", "existing order", None)


def reach(c, state):
    """Drive the call `c` to `state` with prompts played out."""
    steps = {
        "idle": [],
        "prompting_entry": ["start"],
        "collecting_entry": ["start", "played"],
        "collecting_entry+4": ["start", "played", "4"],
        "prompting_confirm": ["start", "played", *"3#", "played", *"1500#"],
        "awaiting_confirm": ["start", "played", *"3#", "played", *"1500#", "played"],
        "saving": ["start", "played", *"3#", "played", *"1500#", "played", "1"],
        "closing": ["start", "played", *"3#", "played", *"1500#", "played", "1", "saved"],
        "done": ["start", "played", *"3#", "played", *"1500#", "played", "1", "saved", "played"],
    }[state]
    for step in steps:
        if step == "start":
            c.start()
        elif step == "saved":
            c.stored()
        elif step == "played":
            c.played()
        else:
            c.press(step)


def saved(status, digits, attempts, category=True, value=True):
    return [
        Save(
            MenuResult(
                status,
                Category(*CAT3) if category else None,
                Decimal("1500") if value else None,
                digits,
                attempts,
            )
        )
    ]


EVENTS = [
    "start",
    "1",
    "2",
    "#",
    "*",
    "A",
    "prompt_finished",
    "timer",
    "hangup",
    "saved",
    "save_failed",
]


def no_save_pending(state):
    """A save report when no save was asked for means nothing."""
    return {"saved": ([], state), "save_failed": ([], state)}


# (state reached, event) -> (actions, next state). Rows missing a cell are bugs.
TABLE = {
    "idle": {
        "start": ([Play(("greeting", "ask_category"))], S.PROMPTING_ENTRY),
        "1": ([], S.IDLE),
        "2": ([], S.IDLE),
        "#": ([], S.IDLE),
        "*": ([], S.IDLE),
        "A": ([], S.IDLE),
        "prompt_finished": ([], S.IDLE),
        "timer": ([], S.IDLE),
        "hangup": (saved("incomplete", "", 0, False, False), S.DONE),
        **no_save_pending(S.IDLE),
    },
    "prompting_entry": {
        "start": ([], S.PROMPTING_ENTRY),
        "1": ([StopPlayback(), NEXT], S.COLLECTING_ENTRY),
        "2": ([StopPlayback(), NEXT], S.COLLECTING_ENTRY),
        "#": ([StopPlayback(), Play(("no_input", "ask_category"))], S.PROMPTING_ENTRY),
        "*": ([StopPlayback(), Play(("ask_category",))], S.PROMPTING_ENTRY),
        "A": ([], S.PROMPTING_ENTRY),
        "prompt_finished": ([FIRST], S.COLLECTING_ENTRY),
        "timer": ([], S.PROMPTING_ENTRY),
        "hangup": (saved("incomplete", "", 1, False, False), S.DONE),
        **no_save_pending(S.PROMPTING_ENTRY),
    },
    "collecting_entry": {
        "start": ([], S.COLLECTING_ENTRY),
        "1": ([NEXT], S.COLLECTING_ENTRY),
        "2": ([NEXT], S.COLLECTING_ENTRY),
        "#": ([CancelTimer(), Play(("no_input", "ask_category"))], S.PROMPTING_ENTRY),
        "*": ([CancelTimer(), Play(("ask_category",))], S.PROMPTING_ENTRY),
        "A": ([], S.COLLECTING_ENTRY),
        "prompt_finished": ([], S.COLLECTING_ENTRY),
        "timer": ([Play(("no_input", "ask_category"))], S.PROMPTING_ENTRY),
        "hangup": (saved("incomplete", "", 1, False, False), S.DONE),
        **no_save_pending(S.COLLECTING_ENTRY),
    },
    "collecting_entry+4": {
        "start": ([], S.COLLECTING_ENTRY),
        "1": ([NEXT], S.COLLECTING_ENTRY),
        "2": ([NEXT], S.COLLECTING_ENTRY),  # "42" is a code, but only # or a timeout ends it
        "#": ([CancelTimer(), Play(("unknown_category", "ask_category"))], S.PROMPTING_ENTRY),
        "*": ([NEXT], S.COLLECTING_ENTRY),
        "A": ([], S.COLLECTING_ENTRY),
        "prompt_finished": ([], S.COLLECTING_ENTRY),
        "timer": ([Play(("unknown_category", "ask_category"))], S.PROMPTING_ENTRY),
        "hangup": (saved("incomplete", "4", 1, False, False), S.DONE),
        **no_save_pending(S.COLLECTING_ENTRY),
    },
    "prompting_confirm": {
        "start": ([], S.PROMPTING_CONFIRM),
        "1": ([StopPlayback(), *saved("confirmed", "3#1500#1", 1)], S.SAVING),
        "2": ([StopPlayback(), Play(("ask_category",))], S.PROMPTING_ENTRY),
        "#": ([StopPlayback(), Play(("confirm",))], S.PROMPTING_CONFIRM),
        "*": ([StopPlayback(), Play(("confirm",))], S.PROMPTING_CONFIRM),
        "A": ([], S.PROMPTING_CONFIRM),
        "prompt_finished": ([FIRST], S.AWAITING_CONFIRM),
        "timer": ([], S.PROMPTING_CONFIRM),
        "hangup": (saved("incomplete", "3#1500#", 1), S.DONE),
        **no_save_pending(S.PROMPTING_CONFIRM),
    },
    "awaiting_confirm": {
        "start": ([], S.AWAITING_CONFIRM),
        "1": ([CancelTimer(), *saved("confirmed", "3#1500#1", 1)], S.SAVING),
        "2": ([CancelTimer(), Play(("ask_category",))], S.PROMPTING_ENTRY),
        "#": ([CancelTimer(), Play(("confirm",))], S.PROMPTING_CONFIRM),
        "*": ([CancelTimer(), Play(("confirm",))], S.PROMPTING_CONFIRM),
        "A": ([], S.AWAITING_CONFIRM),
        "prompt_finished": ([], S.AWAITING_CONFIRM),
        "timer": ([Play(("confirm",))], S.PROMPTING_CONFIRM),
        "hangup": (saved("incomplete", "3#1500#", 1), S.DONE),
        **no_save_pending(S.AWAITING_CONFIRM),
    },
    "saving": {
        "start": ([], S.SAVING),
        "1": ([], S.SAVING),
        "2": ([], S.SAVING),
        "#": ([], S.SAVING),
        "*": ([], S.SAVING),
        "A": ([], S.SAVING),
        "prompt_finished": ([], S.SAVING),
        "timer": ([], S.SAVING),
        "hangup": ([], S.DONE),  # the save is on its way; nothing more to store
        "saved": ([Play(("saved",))], S.CLOSING),
        "save_failed": ([Play(("not_saved",))], S.CLOSING),
    },
    "closing": {
        "start": ([], S.CLOSING),
        "1": ([], S.CLOSING),
        "2": ([], S.CLOSING),
        "#": ([], S.CLOSING),
        "*": ([], S.CLOSING),
        "A": ([], S.CLOSING),
        "prompt_finished": ([HangUp()], S.DONE),
        "timer": ([], S.CLOSING),
        "hangup": ([], S.DONE),
        **no_save_pending(S.CLOSING),
    },
    "done": {event: ([], S.DONE) for event in EVENTS},
}


def event_for(c, name):
    match name:
        case "start":
            return Start()
        case "prompt_finished":
            return PromptFinished()
        case "timer":
            return TimerFired(c.last_token)
        case "hangup":
            return Hangup()
        case "saved":
            return Saved()
        case "save_failed":
            return SaveFailed()
        case key:
            return Digit(key)


@pytest.mark.parametrize("state", list(TABLE))
def test_the_table_covers_every_event(state):
    assert sorted(TABLE[state]) == sorted(EVENTS)


@pytest.mark.parametrize(
    ("state", "event"), [(state, event) for state in TABLE for event in EVENTS]
)
def test_state_event(call, state, event):
    c = call(auto_store=False)
    reach(c, state)
    assert c.menu.state.value == state.split("+")[0]
    expected_actions, expected_state = TABLE[state][event]
    assert c.send(event_for(c, event)) == expected_actions
    assert c.menu.state is expected_state
