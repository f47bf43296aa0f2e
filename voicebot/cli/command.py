"""What the `voicebot` subcommands that work on the database share: a handler
that loads the settings and runs the command on asyncio, a group's usage when
no subcommand is named, and the `--since` span (30m, 12h, 1d, 2w)."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from voicebot.config_errors import load_settings_or_exit
from voicebot.journal.database import DatabaseError
from voicebot.settings import Settings

#: An async subcommand: the parsed arguments and the settings in, the exit status out.
SettingsCommand = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
Handler = Callable[[argparse.Namespace], int]

_SPAN = re.compile(r"^(\d+)([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def with_settings(command: SettingsCommand, prog: str = "voicebot") -> Handler:
    """The argparse handler of `command`: settings that do not load are one line
    per problem and exit 2 (prefixed `prog`); a database that cannot be opened
    is one line naming the file and exit 2."""

    def handler(args: argparse.Namespace) -> int:
        settings = load_settings_or_exit(prog)
        try:
            return asyncio.run(command(args, settings))
        except DatabaseError as error:
            print(f"voicebot: {error}", file=sys.stderr)
            return 2

    return handler


def usage_of(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command group named without a subcommand: its help, exit 2."""

    def handler(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return handler


def parse_span(text: str) -> timedelta:
    match = _SPAN.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a span like 30m, 12h, 1d or 2w")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
