"""Every log call in the product names its event `noun.verb` (issue 8): one
style, so operators can grep `sip.` or `.refused` and find them all."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "msg"}
NOUN_VERB = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


def log_events() -> list[tuple[str, int, str]]:
    found = []
    for package in ("voicebot", "ivr", "webhooks"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS
                    and "log" in ast.unparse(node.func.value).lower()
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    continue
                found.append((str(path.relative_to(ROOT)), node.lineno, node.args[0].value))
    return found


def test_the_scan_sees_the_log_calls() -> None:
    events = {event for _, _, event in log_events()}
    # Known events from three layers: the scan would find nothing if it broke.
    assert {"call.saved", "sip.listening", "webhook.delivered"} <= events


def test_every_event_is_noun_dot_verb() -> None:
    bad = [
        f"{path}:{line} {event!r}"
        for path, line, event in log_events()
        if not NOUN_VERB.match(event)
    ]
    assert not bad, "log events not in noun.verb form:\n" + "\n".join(bad)
