"""`voicebot webhooks`: look at the outbox, replay dead letters, test a receiver.

    voicebot webhooks list [--status pending|failed|delivered] [--limit N]
    voicebot webhooks replay ID | --failed [--endpoint URL]
    voicebot webhooks enable URL          (after a receiver answered 410 Gone)
    voicebot webhooks test URL [--secret whsec_...]

They work on the database named by `storage.database`, next to a running
`voicebot run`, whose dispatcher picks replayed rows up within a second.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import aiosqlite

from voicebot.cli.command import Handler, SettingsCommand, usage_of, with_settings
from voicebot.journal.database import open_database
from voicebot.settings import Settings, check_webhook_secret
from voicebot.webhook_service import endpoints_from_settings
from webhooks import (
    count_by_status,
    enable_endpoint,
    encode_body,
    list_deliveries,
    new_webhook_id,
    post_signed,
    replay,
)
from webhooks.outbox import STATUS_FILTERS, DeliveryRecord, disabled_endpoints


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "webhooks", help="inspect, replay and test webhook deliveries", description=__doc__
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.set_defaults(handler=usage_of(parser))
    commands = parser.add_subparsers(dest="webhooks_command")

    listing = commands.add_parser("list", help="show deliveries, newest first")
    listing.add_argument("--status", choices=sorted(STATUS_FILTERS), help="only this status")
    listing.add_argument("--limit", type=int, default=50, help="rows to show (default 50)")
    listing.set_defaults(handler=_sync(_list))

    replaying = commands.add_parser(
        "replay", help="re-deliver with the original webhook-id and a fresh attempt budget"
    )
    target = replaying.add_mutually_exclusive_group(required=True)
    target.add_argument("webhook_id", nargs="?", help="msg_... as shown by `list`")
    target.add_argument("--failed", action="store_true", help="every dead letter")
    replaying.add_argument("--endpoint", help="only deliveries to this URL")
    replaying.set_defaults(handler=_sync(_replay))

    enabling = commands.add_parser("enable", help="re-enable an endpoint disabled by 410 Gone")
    enabling.add_argument("url")
    enabling.set_defaults(handler=_sync(_enable))

    testing = commands.add_parser("test", help="send a signed `ping` event and print the answer")
    testing.add_argument("url")
    testing.add_argument("--secret", help="whsec_<base64> (default: the configured endpoint's)")
    testing.add_argument("--timeout", type=float, default=None, help="seconds (default: settings)")
    testing.set_defaults(handler=_sync(_test))


def _sync(command: SettingsCommand) -> Handler:
    return with_settings(command, "voicebot webhooks")


@contextlib.asynccontextmanager
async def _outbox(settings: Settings) -> AsyncIterator[aiosqlite.Connection]:
    """The database named by `storage.database` (the outbox is in it); closed after."""
    conn = await open_database(settings.storage.database)
    try:
        yield conn
    finally:
        await conn.close()


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _outcome(record: DeliveryRecord) -> str:
    if record.status == "delivered":
        return f"{record.last_status} at {_when(record.delivered_at)}"
    if record.status == "pending" and record.next_attempt_at is not None:
        last = f"{record.last_error}; " if record.last_error else ""
        return f"{last}next attempt {_when(record.next_attempt_at)}"
    return record.last_error or "-"


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with _outbox(settings) as conn:
        statuses = STATUS_FILTERS[args.status] if args.status else None
        records = await list_deliveries(conn, statuses=statuses, limit=args.limit)
        counts = await count_by_status(conn)
        disabled = await disabled_endpoints(conn)
    print(
        f"{'WEBHOOK-ID':36}  {'TYPE':20}  {'STATUS':9}  {'TRIES':>5}  {'CREATED':20}  "
        f"ENDPOINT  /  OUTCOME"
    )
    for r in records:
        print(
            f"{r.webhook_id:36}  {r.event_type:20}  {r.status:9}  {r.attempts:>5}  "
            f"{_when(r.created_at):20}  {r.endpoint_url}  /  {_outcome(r)}"
        )
    print("totals: " + ", ".join(f"{status} {count}" for status, count in counts.items()))
    for url, reason in disabled.items():
        print(f"disabled endpoint: {url} ({reason}); re-enable with: voicebot webhooks enable URL")
    return 0


async def _replay(args: argparse.Namespace, settings: Settings) -> int:
    async with _outbox(settings) as conn:
        count = await replay(
            conn,
            now=datetime.now(UTC),
            webhook_id=args.webhook_id,
            failed=args.failed,
            endpoint_url=args.endpoint,
        )
        disabled = await disabled_endpoints(conn)
    if count == 0:
        what = args.webhook_id or "failed deliveries"
        print(f"nothing to replay ({what}: none found, or being sent right now)", file=sys.stderr)
        return 1
    print(f"re-queued {count} deliver{'y' if count == 1 else 'ies'} with their original webhook-id")
    for url in disabled:
        print(
            f"warning: {url} is disabled (410 Gone); its deliveries will fail again"
            f" until: voicebot webhooks enable {url}",
            file=sys.stderr,
        )
    return 0


async def _enable(args: argparse.Namespace, settings: Settings) -> int:
    async with _outbox(settings) as conn:
        changed = await enable_endpoint(conn, args.url)
    if not changed:
        print(f"{args.url} was not disabled", file=sys.stderr)
        return 1
    print(f"enabled {args.url}; replay its dead letters with: voicebot webhooks replay --failed")
    return 0


async def _test(args: argparse.Namespace, settings: Settings) -> int:
    endpoints = endpoints_from_settings(settings.webhooks)
    if args.secret:
        try:
            check_webhook_secret(args.secret)
        except ValueError as error:
            print(f"--secret: {error}", file=sys.stderr)
            return 2
        secrets = [args.secret]
    else:
        same = [e for e in endpoints if e.url == args.url]
        chosen = same[0] if same else (endpoints[0] if endpoints else None)
        if chosen is None:
            print(
                "no secret: pass --secret whsec_... or configure webhooks.endpoints",
                file=sys.stderr,
            )
            return 2
        secrets = chosen.secrets
    timeout = args.timeout if args.timeout is not None else settings.webhooks.timeout_s
    now = datetime.now(UTC)
    webhook_id = new_webhook_id()
    body = encode_body("ping", {"message": "voicebot webhook test"}, now).encode()
    try:
        async with aiohttp.ClientSession() as session:
            result = await post_signed(
                session,
                args.url,
                secrets,
                webhook_id,
                body,
                timestamp=int(now.timestamp()),
                timeout_s=timeout,
                max_response_bytes=64 * 1024,
            )
    except (ValueError, aiohttp.InvalidURL) as exc:
        print(f"cannot send to {args.url}: {exc}", file=sys.stderr)
        return 2
    print(f"POST {args.url}  webhook-id: {webhook_id}")
    if result.status is None:
        print(f"no answer: {result.error}")
        return 1
    print(f"HTTP {result.status}  ({result.duration_s * 1000:.0f} ms)")
    for name, value in result.headers.items():
        print(f"{name}: {value}")
    print()
    print(result.body.decode("utf-8", "replace"))
    return 0 if result.ok else 1
