"""The prompts callbacks ask for, beyond the menu's (`ivr.PROMPTS`), and the whisper.

Every name here has a text per language in voicebot/prompts/manifest.toml and
a WAV per language; tests/media/test_prompt_library.py checks both.

The whisper to the manager is built from fragments and the menu's digits:
`cb_missed_from 3 8 0 … cb_minutes 1 2 cb_attempt 2 cb_choice`. Pure: it
names prompts, the dialler plays them.
"""

from __future__ import annotations

from datetime import datetime

#: A missed call sent to the bot hears this, then the bot hangs up.
CALLBACK_PROMISED = "callback_promised"

#: What the SIP dialler says (voicebot/callbacks/dialler.py), besides digit_0 … digit_9.
DIALLER_PROMPTS: tuple[str, ...] = (
    "cb_missed_from",  # "Callback request. Missed call from" (then the number, digit by digit)
    "cb_minutes",  # "Minutes since the call" (then the minutes, digit by digit)
    "cb_attempt",  # "Attempt" (then its number)
    "cb_choice",  # "Press one to connect, two to call later, three if no callback is needed."
    "cb_connecting",  # after 1
    "cb_later",  # after 2
    "cb_closed",  # after 3
    "cb_client_hello",  # client first: "You called us. Connecting you to a manager."
)

CALLBACK_PROMPTS: tuple[str, ...] = (CALLBACK_PROMISED, *DIALLER_PROMPTS)
#: Same tuple, the name the dialler's first version used.
CALLBACK_PROMPT_NAMES = CALLBACK_PROMPTS
DIGIT_NAMES: tuple[str, ...] = tuple(f"digit_{d}" for d in range(10))
#: What the dialler's prompt library must hold.
DIALLER_PROMPT_NAMES: tuple[str, ...] = DIALLER_PROMPTS + DIGIT_NAMES
#: Longest number read out; a longer one is hostile or broken input, cut here.
MAX_READ_DIGITS = 20


def digits(text: str) -> list[str]:
    """The digit prompts of a number: "+380 44" -> digit_3, digit_8, digit_0, digit_4, digit_4."""
    return [f"digit_{c}" for c in text if c.isascii() and c.isdigit()][:MAX_READ_DIGITS]


def minutes_since(missed_at: datetime, now: datetime) -> int:
    return max(0, int((now - missed_at).total_seconds() // 60))


def whisper(client_number: str, missed_at: datetime, now: datetime, attempt: int) -> list[str]:
    """What the manager hears on answering: who, how long ago, which attempt, the choice."""
    return [
        "cb_missed_from",
        *digits(client_number),
        "cb_minutes",
        *digits(str(minutes_since(missed_at, now))),
        "cb_attempt",
        *digits(str(max(1, attempt))),
        "cb_choice",
    ]
