"""The `voicebot` command. Each subcommand group lives in its own module and
exposes `register(subparsers)`; this module only assembles them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from voicebot import __version__


def build_parser() -> argparse.ArgumentParser:
    from voicebot.cli import callbacks, check, journal, run, simulate, webhooks

    parser = argparse.ArgumentParser(prog="voicebot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"voicebot {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in (run, check, simulate, webhooks, journal, callbacks):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
