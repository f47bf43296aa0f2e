"""Configuration errors as one line per problem, naming the setting and the
expected form (`sip.rtp_port_min: ...`, env `VOICEBOT_SIP__RTP_PORT_MIN`)."""

from __future__ import annotations

from pydantic import ValidationError

from voicebot.settings import ConfigFileError


def describe_problems(error: ValidationError | ConfigFileError) -> list[str]:
    if isinstance(error, ConfigFileError):
        return [str(error)]
    lines: list[str] = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "settings"
        message = item["msg"].removeprefix("Value error, ")
        env = "VOICEBOT_" + "__".join(
            str(part).upper() for part in item["loc"] if not isinstance(part, int)
        )
        given = item.get("input")
        shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
        if item["type"] == "extra_forbidden":
            message = "unknown setting"
        lines.append(f"{location}: {message}{shown} [env {env}]")
    return lines
