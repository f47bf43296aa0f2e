"""The prompts callbacks ask for, beyond the menu's (`ivr.PROMPTS`).

Every name here has a text per language in voicebot/prompts/manifest.toml and
a WAV per language; tests/media/test_prompt_library.py checks both.
"""

from __future__ import annotations

#: A missed call sent to the bot hears this, then the bot hangs up.
CALLBACK_PROMISED = "callback_promised"

CALLBACK_PROMPTS: tuple[str, ...] = (CALLBACK_PROMISED,)
