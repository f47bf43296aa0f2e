"""Configuration errors as one line per problem, naming the setting both ways
(dotted path and environment variable) and the expected form:

    voicebot check: sip.rtp_port_min (VOICEBOT_SIP__RTP_PORT_MIN): ...

Every subcommand loads its settings through `load_settings_or_exit`, so a bad
file, a bad variable or a bad value reads the same whichever command met it,
never as a traceback, and never quoting a secret (a SecretStr field's input,
or the value of a key that is not a setting at all, which may be a misspelt
`password`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, NoReturn

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import SettingsError
from pydantic_settings.sources import EnvSettingsSource

from voicebot.settings import CONFIG_ENV, ConfigFileError, Settings, load_settings

#: Exit status of a command refused for its configuration (as argparse's usage errors).
CONFIG_EXIT = 2

_ENV_PREFIX = "VOICEBOT_"
_SHOWN_INPUT_MAX = 60


def load_settings_or_exit(prog: str = "voicebot") -> Settings:
    """The settings, or one line per problem on stderr and exit status 2."""
    try:
        return load_settings()
    except (ValidationError, ConfigFileError, SettingsError) as error:
        exit_for(error, prog)


def exit_for(error: ValidationError | ConfigFileError | SettingsError, prog: str) -> NoReturn:
    for line in describe_problems(error):
        print(f"{prog}: {line}", file=sys.stderr)
    raise SystemExit(CONFIG_EXIT)


def describe_problems(error: ValidationError | ConfigFileError | SettingsError) -> list[str]:
    if isinstance(error, ConfigFileError):
        return [str(error)]
    if isinstance(error, SettingsError):
        return _environment_problems() or [
            f"environment: {error}; expected JSON for list and table settings"
        ]
    lines: list[str] = []
    for item in error.errors(include_url=False):
        loc: tuple[str | int, ...] = tuple(item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        field, sep, rest = message.partition(": ")
        # A rule over a whole section names its field first ("api_token: ...").
        if sep and field.isidentifier() and _annotation_at((*loc, field)) is not None:
            loc, message = (*loc, field), rest
        if item["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            known = _field_names(_annotation_at(loc[:-1]))
            message = "unknown setting" + (f"; expected one of {', '.join(known)}" if known else "")
        elif not _is_secret(loc):
            message += _shown(item.get("input"))
        lines.append(f"{setting_name(loc)}: {message}")
    return lines


def setting_name(loc: Sequence[str | int]) -> str:
    """`webhooks.endpoints.0.secret (VOICEBOT_WEBHOOKS__ENDPOINTS__0__SECRET)`."""
    if not loc:
        return "settings"
    dotted = ".".join(str(part) for part in loc)
    return f"{dotted} ({_ENV_PREFIX}{'__'.join(str(part).upper() for part in loc)})"


def _shown(given: object) -> str:
    if isinstance(given, bool | int | float) or (
        isinstance(given, str) and len(given) <= _SHOWN_INPUT_MAX
    ):
        return f" (got {given!r})"
    return ""


# -- the settings model, walked by location --------------------------------


def _annotation_at(loc: Sequence[str | int]) -> Any:
    """The declared type at `loc` in Settings, or None when there is none."""
    current: Any = Settings
    for part in loc:
        current = _strip(current)
        if isinstance(part, int) or (isinstance(part, str) and part.isdigit()):
            args = typing.get_args(current)
            if typing.get_origin(current) is not list or not args:
                return None
            current = args[0]
            continue
        fields = _fields(current)
        if part not in fields:
            return None
        current = fields[part]
    return current


def _strip(annotation: Any) -> Any:
    """`X | None` is X; `SecretStr | list[SecretStr]` stays as it is."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return annotation


def _fields(annotation: Any) -> dict[str, Any]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {name: info.annotation for name, info in annotation.model_fields.items()}
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        hints = typing.get_type_hints(annotation)
        return {f.name: hints[f.name] for f in dataclasses.fields(annotation)}
    return {}


def _field_names(annotation: Any) -> list[str]:
    return list(_fields(_strip(annotation)))


def _is_secret(loc: Sequence[str | int]) -> bool:
    """A SecretStr anywhere at or above `loc`, or a place the model does not
    know (nothing is quoted from where a secret might be)."""
    for end in range(len(loc), 0, -1):
        annotation = _annotation_at(loc[:end])
        if annotation is None or "SecretStr" in repr(annotation) or annotation is SecretStr:
            return True
        if _fields(_strip(annotation)):
            break  # a section or an item: its own fields were looked at above
    return False


# -- environment values pydantic-settings could not even parse -------------


def _environment_problems() -> list[str]:
    """Which VOICEBOT_ variables are not the JSON their setting needs: tried
    one at a time, since pydantic-settings names only the section."""
    lines: list[str] = []
    for name, value in sorted(os.environ.items()):
        if not name.upper().startswith(_ENV_PREFIX) or name.upper() == CONFIG_ENV:
            continue
        source = EnvSettingsSource(Settings)
        source.env_vars = {name.lower(): value}
        try:
            source()
        except SettingsError:
            loc = tuple(name[len(_ENV_PREFIX) :].lower().split("__"))
            lines.append(
                f"{'.'.join(loc)} ({name.upper()}): not valid JSON;"
                f" expected {_json_form(_annotation_at(loc))}"
            )
    return lines


def _json_form(annotation: Any) -> str:
    annotation = _strip(annotation)
    if typing.get_origin(annotation) is list:
        return 'a JSON list, e.g. ["10.0.0.5", "10.0.0.0/24"] or [{"url": "..."}]'
    return 'a JSON object, e.g. {"key": "value"}'
