"""`voicebot run`: everything in one asyncio process until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from voicebot.config_errors import load_settings_or_exit
from voicebot.logs import configure_logging, get_logger


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run the bot: SIP user agent, HTTP API, webhook dispatcher"
    )
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="event loop: asyncio (default) or uvloop (pip install 'voicebot[uvloop]')",
    )
    parser.set_defaults(handler=run)


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """None for the stock asyncio loop; ImportError when uvloop is asked for and missing."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def run(args: argparse.Namespace) -> int:
    settings = load_settings_or_exit("voicebot run")
    try:
        loop_factory = _loop_factory(getattr(args, "loop", "asyncio"))
    except ImportError:
        print(
            "voicebot: --loop uvloop needs the uvloop package: pip install 'voicebot[uvloop]'",
            file=sys.stderr,
        )
        return 1
    configure_logging(settings.log.level, settings.log.format)
    from voicebot.app import serve
    from voicebot.journal.database import DatabaseError
    from voicebot.media.prompt_library import PromptError
    from voicebot.startup import StartupError

    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(serve(settings))
    except DatabaseError as error:
        # One line naming the file and the problem (storage.database).
        get_logger().error("voicebot.start_failed", error=str(error))
        return 1
    except StartupError as error:
        # A port or range another process holds: the address and the setting.
        get_logger().error("voicebot.start_failed", error=str(error))
        return 1
    except PromptError as error:
        get_logger().error("voicebot.prompt_error", error=str(error))
        return 1
    except OSError as error:
        get_logger().error("voicebot.start_failed", error=str(error))
        return 1
    return 0
