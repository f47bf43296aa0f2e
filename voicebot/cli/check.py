"""`voicebot check`: validate configuration and print it with secrets masked."""

from __future__ import annotations

import argparse
import json
import sys

from voicebot.config_errors import load_settings_or_exit
from voicebot.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check", help="validate the configuration and print it with secrets masked"
    )
    parser.add_argument("--json", action="store_true", help="print the settings as JSON")
    parser.set_defaults(handler=run_check)


def masked(settings: Settings) -> dict[str, object]:
    """Settings as plain data; SecretStr fields print as '**********'."""
    return json.loads(settings.model_dump_json())


def run_check(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit("voicebot check")
    problems = startup_problems(settings)
    data = masked(settings)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        _print_toml_like(data)
    for line in problems:
        print(f"voicebot check: {line}", file=sys.stderr)
    return 1 if problems else 0


def startup_problems(settings: Settings) -> list[str]:
    """Problems only visible with the files at hand (prompts, database directory)."""
    from voicebot.media.prompt_library import PROMPT_NAMES, PromptError, PromptLibrary

    problems: list[str] = []
    try:
        PromptLibrary.load(
            settings.ivr.language, PROMPT_NAMES, override_dir=settings.ivr.prompts_dir
        )
    except PromptError as error:
        problems.append(f"ivr.prompts_dir: {error}")
    parent = settings.storage.database.parent
    if parent.exists() and not parent.is_dir():
        problems.append(f"storage.database: {parent} is not a directory")
    return problems


def _print_toml_like(data: dict[str, object], prefix: str = "") -> None:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix:
        print(f"[{prefix}]")
    for key, value in scalars.items():
        print(f"{key} = {json.dumps(value, ensure_ascii=False)}")
    if scalars:
        print()
    for key, value in tables.items():
        assert isinstance(value, dict)
        _print_toml_like(value, f"{prefix}.{key}" if prefix else key)
