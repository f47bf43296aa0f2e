"""The bundled softphone (`voicebot simulate-call`) against the real app: the
manager hears the read-back, frame by frame, in the order the menu promises,
and the journal holds what was keyed. The transcript is an oracle for what the
bot *said*, which SIPp cannot give."""

from __future__ import annotations

import pytest

from tests.integration.conftest import MakeBot, finished, target, wait_rows
from tests.ports import rtp_window
from voicebot.softphone import KeyingStyle, PromptTranscript, place_call

QUICK = KeyingStyle(listen_s=0.8, timeout_s=40)


def spelled(text: str) -> list[str]:
    return [f"digit_{c}" if c.isdigit() else "point" for c in text]


def read_back(code: str, value: str) -> list[str]:
    """The prompts from the category read-back to "saved"."""
    return [
        "you_entered_category",
        *spelled(code),
        "you_entered_value",
        *spelled(value),
        "confirm",
        "saved",
    ]


async def test_readback_is_heard_in_order_then_saved(make_bot: MakeBot) -> None:
    bot = await make_bot()
    report = await place_call(
        target(bot),
        "3#1500*5#1",
        codec="PCMA",
        headers={"X-Call-ID": "pbx-77"},
        style=QUICK,
        rtp_ports=rtp_window(1),
    )
    assert report.answered and report.codec == "PCMA"
    assert report.ended == "bot hung up"
    assert report.heard[0] == "greeting"
    readback = report.heard[report.heard.index("you_entered_category") :]
    assert readback == read_back("3", "1500.5")
    (row,) = await wait_rows(bot, finished)
    assert row["status"] == "confirmed" and row["value"] == "1500.5"
    assert row["pbx_call_id"] == "pbx-77"


async def test_wrong_code_is_announced_and_default_value_read_back(make_bot: MakeBot) -> None:
    bot = await make_bot(ivr={"language": "ru"})
    report = await place_call(target(bot), "7#2##1", style=QUICK, rtp_ports=rtp_window(1))
    assert "unknown_category" in report.heard
    readback = report.heard[report.heard.index("you_entered_category") :]
    # Category 2's default value (100) is read back when # alone is keyed.
    assert readback == read_back("2", "100")
    (row,) = await wait_rows(bot, finished)
    assert row["category_code"] == "2" and row["value"] == "100" and row["attempts"] == 2


async def test_confirm_2_enters_again(make_bot: MakeBot) -> None:
    bot = await make_bot()
    report = await place_call(target(bot), "1#5#2,,1#7#1", style=QUICK, rtp_ports=rtp_window(1))
    (row,) = await wait_rows(bot, finished)
    assert row["status"] == "confirmed"
    assert (row["category_code"], row["value"]) == ("1", "7")
    assert report.heard.count("you_entered_category") == 2


@pytest.mark.parametrize("codec", ["PCMU", "PCMA"])
def test_transcript_names_prompts_and_repeats(codec: str) -> None:
    from voicebot.media.g711 import CODECS
    from voicebot.media.prompt_library import PROMPT_NAMES, PromptLibrary

    library = PromptLibrary.load("uk", PROMPT_NAMES)
    law = CODECS[codec]
    transcript = PromptTranscript(codec)
    for name in ("digit_0", "digit_0", "point"):
        for frame in library.frames(name, codec, law.encode):
            transcript.frame(law.decode(frame))
    assert transcript.prompts == ["digit_0", "digit_0", "point"]
    assert transcript.speech_s > 0.3
