"""The post-call menu as a pure state machine: events in, actions out.

No sockets, no asyncio, no clocks: see `ivr.menu` for the rules it keeps.
`voicebot` drives it; it never imports `voicebot`.
"""

from ivr.actions import (
    PROMPTS,
    Action,
    CancelTimer,
    HangUp,
    MenuResult,
    Play,
    Save,
    StartTimer,
    StopPlayback,
)
from ivr.entry import MAX_CODE_DIGITS, MAX_VALUE_DIGITS, Categories, Category, categories_by_code
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
from ivr.menu import Menu, MenuConfig, State

__all__ = [
    "KEYPAD",
    "MAX_CODE_DIGITS",
    "MAX_VALUE_DIGITS",
    "PROMPTS",
    "Action",
    "CancelTimer",
    "Categories",
    "Category",
    "Digit",
    "Event",
    "HangUp",
    "Hangup",
    "Menu",
    "MenuConfig",
    "MenuResult",
    "Play",
    "PromptFinished",
    "Save",
    "SaveFailed",
    "Saved",
    "Start",
    "StartTimer",
    "State",
    "StopPlayback",
    "TimerFired",
    "categories_by_code",
]
