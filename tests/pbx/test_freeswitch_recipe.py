"""config/pbx/freeswitch.xml: well-formed, and every leg to the bot carries the
headers, set on the channel that bridges to it before that bridge (FreeSWITCH
copies sip_h_* variables into the INVITEs a channel sends afterwards). No
FreeSWITCH runs here (Debian ships none): docs/pbx.md says so."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parents[2] / "config" / "pbx" / "freeswitch.xml"


def extensions() -> dict[str, list[tuple[str, str]]]:
    root = ET.fromstring(f"<context>{RECIPE.read_text(encoding='utf-8')}</context>")
    return {
        ext.get("name", ""): [
            (a.get("application", ""), a.get("data", "")) for a in ext.iter("action")
        ]
        for ext in root.iter("extension")
    }


@pytest.mark.parametrize(
    ("name", "reason"), [("voicebot_postcall", "post-call"), ("voicebot_missed", "missed")]
)
def test_the_legs_to_the_bot_set_every_header_before_the_bridge(name: str, reason: str) -> None:
    actions = extensions()[name]
    bridge = next(i for i, (app, data) in enumerate(actions) if app == "bridge")
    assert "voicebot@" in actions[bridge][1]
    headers = dict(data.split("=", 1) for app, data in actions[:bridge] if app == "set")
    assert headers["sip_h_X-Call-Reason"] == reason
    assert headers["sip_h_X-Call-ID"] == "${voicebot_call_id}"
    assert headers["sip_h_X-Client-Number"] == "${voicebot_client}"
    # never ${caller_id_number}: on the manager's leg of an incoming call that is the client
    assert headers["sip_h_X-Manager"] == "${voicebot_manager}"


def test_the_managers_leg_goes_on_to_the_bot_when_the_client_hangs_up() -> None:
    found = extensions()
    inbound = dict(found["voicebot_inbound"])
    assert "{transfer_after_bridge=voicebot_postcall:XML:default," in inbound["bridge"]
    outbound = [data for app, data in found["voicebot_outbound"] if app == "set"]
    assert "transfer_after_bridge=voicebot_postcall:XML:default" in outbound


def quoted(file_name: str) -> ET.Element:
    """A file the recipe quotes in a comment (the directory entry, the bot's context)."""
    text = RECIPE.read_text(encoding="utf-8")
    start = text.index("<include>", text.index(file_name))
    return ET.fromstring(text[start : text.index("</include>", start) + len("</include>")])


def test_the_bot_waits_for_the_transfers_outcome_and_dials_only_its_context() -> None:
    user = quoted("conf/directory/default/voicebot.xml").find("user")
    assert user is not None and user.get("id") == "voicebot"
    variables = {v.get("name"): v.get("value") for v in user.iter("variable")}
    # without it sofia's final NOTIFY says 200 OK before the client's phone rings
    assert variables["confirm_blind_transfer"] == "true"
    assert variables["user_context"] == "voicebot_dialout"
    context = quoted("conf/dialplan/voicebot_dialout.xml").find("context")
    assert context is not None and context.get("name") == "voicebot_dialout"
    bridges = [
        a.get("data", "") for a in context.iter("action") if a.get("application") == "bridge"
    ]
    assert len(bridges) == 2
    # the leg the bot REFERs is transferred in the bot's context, not in default
    assert all(b.startswith("{force_transfer_context=voicebot_dialout}") for b in bridges)
