"""The call journal from a terminal.

    voicebot import-cdr FILE [--timezone ZONE] [--extension-digits N]
    voicebot calls [--since 1d] [--status S] [--manager M] [--type T] [--limit N]
    voicebot categories list [--all] | add CODE NAME [--value V] [--spam] | remove CODE
    voicebot report NAME [--from DAY] [--to DAY] [--manager M] [--csv]

They work on the database named by `storage.database`, next to a running
`voicebot run` (SQLite WAL): the next menu call hears a category change.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import ivr
from voicebot.api.period import PeriodError, resolve
from voicebot.api.reports import DEFAULT_DAYS, REPORTS, period_out
from voicebot.cli.command import parse_span, usage_of, with_settings
from voicebot.journal.call_types import CALL_TYPES, TypeRules
from voicebot.journal.calls import CallFilter, CallLog, iso
from voicebot.journal.categories import (
    CategoryCatalogue,
    CategoryExists,
    CategoryNotFound,
    LastCategory,
)
from voicebot.journal.cdr import RejectedRow, read_master_csv
from voicebot.journal.reports import ReportScope
from voicebot.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    importing = subparsers.add_parser(
        "import-cdr", help="import an Asterisk cdr_csv Master.csv into the call journal"
    )
    importing.add_argument("file", type=Path)
    importing.add_argument(
        "--timezone", help="zone the CDR times are in (default: journal.timezone)"
    )
    importing.add_argument(
        "--extension-digits",
        type=int,
        default=5,
        help="numbers this short are extensions, which tells the direction (default 5)",
    )
    importing.set_defaults(handler=with_settings(_import_cdr))

    calls = subparsers.add_parser("calls", help="list the call journal, newest first")
    calls.add_argument("--since", type=parse_span, default=timedelta(days=1), help="e.g. 1d, 12h")
    calls.add_argument("--status", choices=["answered", "missed", "busy", "failed"])
    calls.add_argument("--direction", choices=["inbound", "outbound", "internal"])
    calls.add_argument("--type", dest="call_type", choices=CALL_TYPES)
    calls.add_argument("--manager")
    calls.add_argument("--number")
    calls.add_argument("--limit", type=int, default=100)
    calls.set_defaults(handler=with_settings(_calls))

    categories = subparsers.add_parser("categories", help="the category catalogue")
    categories.set_defaults(handler=usage_of(categories))
    commands = categories.add_subparsers(dest="categories_command")
    listing = commands.add_parser("list", help="the codes managers can key")
    listing.add_argument("--all", action="store_true", help="include deleted codes")
    listing.set_defaults(handler=with_settings(_categories_list))
    adding = commands.add_parser("add", help="add a code (or revive a deleted one)")
    adding.add_argument("code")
    adding.add_argument("name")
    adding.add_argument("--value", help="default value, e.g. 100 or 12.50")
    adding.add_argument("--spam", action="store_true", help="calls under it are spam")
    adding.set_defaults(handler=with_settings(_categories_add))
    removing = commands.add_parser("remove", help="stop offering a code (history keeps it)")
    removing.add_argument("code")
    removing.set_defaults(handler=with_settings(_categories_remove))

    report = subparsers.add_parser(
        "report", help="a report of /api/v1/reports as a table, or as CSV with --csv"
    )
    report.add_argument("name", choices=list(REPORTS))
    report.add_argument(
        "--from",
        dest="from_",
        help=f"a date (a local day in journal.timezone) or a date-time;"
        f" default: the last {DEFAULT_DAYS} days",
    )
    report.add_argument("--to", help="a date (inclusive) or a date-time (exclusive)")
    report.add_argument("--manager", help="only this manager's calls")
    report.add_argument(
        "--csv", action="store_true", help="CSV on stdout, UTF-8 with a BOM (opens right in Excel)"
    )
    report.set_defaults(handler=with_settings(_report))


def rules_of(settings: Settings) -> TypeRules:
    return TypeRules.from_settings(
        settings.journal.unique_window_days, settings.journal.target_min_talk_s
    )


@contextlib.asynccontextmanager
async def open_call_log(settings: Settings) -> AsyncIterator[CallLog]:
    """The journal named by `storage.database`, its catalogue seeded; closed after."""
    log = await CallLog.open(settings.storage.database, rules_of(settings))
    try:
        await catalogue_of(log, settings).seed(settings.categories)
        yield log
    finally:
        await log.close()


def catalogue_of(log: CallLog, settings: Settings) -> CategoryCatalogue:
    return CategoryCatalogue(log.connection, log.write_lock, keep_one=settings.ivr.ask_category)


async def _import_cdr(args: argparse.Namespace, settings: Settings) -> int:
    zone_name = args.timezone or settings.journal.timezone
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"--timezone {zone_name!r}: not an IANA zone (e.g. Europe/Kyiv)", file=sys.stderr)
        return 2
    try:
        handle = args.file.open(encoding="utf-8", errors="replace", newline="")
    except OSError as exc:
        print(f"cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    added = updated = unchanged = 0
    rejected: list[RejectedRow] = []
    async with open_call_log(settings) as log:
        with handle:
            for item in read_master_csv(handle, zone, args.extension_digits):
                if isinstance(item, RejectedRow):
                    rejected.append(item)
                    continue
                stored = await log.record_call_event(item, source="cdr")
                if stored.created:
                    added += 1
                elif stored.changed:
                    updated += 1
                else:
                    unchanged += 1
    for row in rejected:
        print(f"{args.file}:{row.line}: skipped: {row.reason}", file=sys.stderr)
    print(
        f"imported {args.file}: {added} added, {updated} updated, {unchanged} already there,"
        f" {len(rejected)} skipped"
    )
    return 0


async def _calls(args: argparse.Namespace, settings: Settings) -> int:
    async with open_call_log(settings) as log:
        rows, _ = await log.list(
            CallFilter(
                since=datetime.now(UTC) - args.since,
                status=args.status,
                direction=args.direction,
                call_type=args.call_type,
                manager=args.manager,
                number=args.number,
            ),
            limit=max(1, min(args.limit, 10000)),
        )
    print(
        f"{'ID':>7}  {'STARTED (UTC)':20}  {'DIR':8}  {'STATUS':8}  {'CLIENT':16}  {'MANAGER':8}"
        f"  {'WAIT':>5}  {'TALK':>6}  CATEGORY  TYPES"
    )
    for call in rows:
        started = (iso(call.started_at) or "")[:19].replace("T", " ")
        category = f"{call.category_code} {call.category_name}" if call.category_code else "-"
        print(
            f"{call.id:>7}  {started:20}  {call.direction or '-':8}  {call.status:8}"
            f"  {call.client_number or '-':16}  {call.manager or '-':8}"
            f"  {_secs(call.wait_s):>5}  {_secs(call.talk_s):>6}  {category}"
            f"  {','.join(call.types(log.rules)) or '-'}"
        )
    print(f"{len(rows)} call{'s' if len(rows) != 1 else ''}")
    return 0


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


async def _categories_list(args: argparse.Namespace, settings: Settings) -> int:
    async with open_call_log(settings) as log:
        entries = await catalogue_of(log, settings).entries(include_deleted=args.all)
    print(f"{'CODE':6}  {'VALUE':>10}  {'SPAM':4}  NAME")
    for e in entries:
        value = str(e.value) if e.value is not None else "-"
        flags = "yes" if e.spam else ""
        deleted = "  (deleted)" if e.deleted else ""
        print(f"{e.code:6}  {value:>10}  {flags:4}  {e.name}{deleted}")
    return 0


async def _categories_add(args: argparse.Namespace, settings: Settings) -> int:
    try:
        value = Decimal(args.value) if args.value is not None else None
    except InvalidOperation:
        print(f"voicebot categories add: value {args.value!r}: not a number", file=sys.stderr)
        return 2
    try:
        category = ivr.Category(code=args.code, name=args.name, value=value, spam=args.spam)
    except ValueError as exc:
        print(f"voicebot categories add: {exc}", file=sys.stderr)
        return 2
    return await _edit_catalogue(
        settings,
        args.code,
        lambda catalogue: catalogue.add(
            category.code, category.name, category.value, category.spam
        ),
        f"added category {category.code} ({category.name}); the next menu call offers it",
    )


async def _categories_remove(args: argparse.Namespace, settings: Settings) -> int:
    return await _edit_catalogue(
        settings,
        args.code,
        lambda catalogue: catalogue.remove(args.code),
        f"removed category {args.code}; calls filed under it keep it",
    )


#: What the operator is told when the catalogue refuses a change to a code.
_CATALOGUE_REFUSALS: dict[type[Exception], str] = {
    CategoryExists: "category {code} exists; remove it first or edit it",
    CategoryNotFound: "no category {code}",
    LastCategory: "category {code} is the last one; the menu needs one",
}


async def _edit_catalogue(
    settings: Settings,
    code: str,
    edit: Callable[[CategoryCatalogue], Awaitable[object]],
    done: str,
) -> int:
    """Apply `edit` to the catalogue: `done` and 0, or the refusal and 1."""
    async with open_call_log(settings) as log:
        try:
            await edit(catalogue_of(log, settings))
        except (CategoryExists, CategoryNotFound, LastCategory) as refused:
            print(_CATALOGUE_REFUSALS[type(refused)].format(code=code), file=sys.stderr)
            return 1
    print(done)
    return 0


async def _report(args: argparse.Namespace, settings: Settings) -> int:
    zone = ZoneInfo(settings.journal.timezone)
    try:
        period = resolve(
            args.from_, args.to, zone, default_days=DEFAULT_DAYS, now=datetime.now(UTC)
        )
    except PeriodError as exc:
        print(f"voicebot report: --{exc}", file=sys.stderr)
        return 2
    report = REPORTS[args.name]
    async with open_call_log(settings) as log:
        scope = ReportScope(period.since, period.until, zone, log.rules, args.manager)
        table = report.as_csv(await report.build(log, scope, period_out(period, zone)), zone)
    if args.csv:
        sys.stdout.buffer.write(table.text().encode("utf-8"))
        sys.stdout.buffer.flush()
        return 0
    until = period.until.strftime("%Y-%m-%d %H:%M") if period.until else "now"
    since = period.since.strftime("%Y-%m-%d %H:%M") if period.since else "the start"
    print(f"{report.summary}, {since} to {until} ({zone.key})")
    cells = [[str(v) for v in table.header], *([str(v) for v in row] for row in table.rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.header))]
    for row in cells:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0
