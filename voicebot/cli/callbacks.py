"""The callback queue from a terminal.

    voicebot callbacks list [--state S] [--number N] [--since 1d] [--limit N]
    voicebot callbacks cancel ID
    voicebot callbacks retry ID

They work on the database named by `storage.database`, next to a running
`voicebot run`: its scheduler sees a retried job within `callbacks.lease_s / 2`
(at most 30 s), and its dispatcher sends the webhook a change enqueued.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from voicebot.callbacks.config import numbers_from_settings, policy_from_settings
from voicebot.callbacks.queue import CallbackJob, CallbackQueue, JobFilter, QueueError, iso
from voicebot.cli.command import parse_span, usage_of, with_settings
from voicebot.settings import Settings
from voicebot.webhook_service import endpoints_from_settings

STATES = ("queued", "dialling", "completed", "not_needed", "failed", "cancelled", "skipped")


def register(subparsers: argparse._SubParsersAction) -> None:
    group = subparsers.add_parser("callbacks", help="the queue of callbacks to missed callers")
    group.set_defaults(handler=usage_of(group))
    commands = group.add_subparsers(dest="callbacks_command")
    listing = commands.add_parser("list", help="callback jobs, newest first")
    listing.add_argument("--state", choices=STATES)
    listing.add_argument("--number", help="the client's number")
    listing.add_argument("--since", type=parse_span, help="e.g. 1d, 12h (default: all)")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(handler=with_settings(_list))
    cancel = commands.add_parser("cancel", help="cancel an open job")
    cancel.add_argument("id", type=int)
    cancel.set_defaults(handler=with_settings(_cancel))
    retry = commands.add_parser("retry", help="queue a job again, due now")
    retry.add_argument("id", type=int)
    retry.set_defaults(handler=with_settings(_retry))


async def open_queue(settings: Settings) -> CallbackQueue:
    s = settings.callbacks
    return await CallbackQueue.open(
        settings.storage.database,
        numbers_from_settings(s),
        policy_from_settings(s),
        targets=s.targets,
        order=s.order,
        endpoints=endpoints_from_settings(settings.webhooks),
        lease_s=s.lease_s,
    )


def _line(job: CallbackJob) -> str:
    due = iso(job.due_at) if job.state == "queued" else "-"
    return "\t".join(
        str(part)
        for part in (
            job.id,
            job.state,
            job.client_number,
            f"attempt {job.round}",
            f"due {due}",
            f"misses {len(job.missed_calls)}",
            job.reason or "-",
            iso(job.created_at),
        )
    )


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    queue = await open_queue(settings)
    try:
        since = datetime.now(UTC) - args.since if args.since else None
        jobs, _ = await queue.list(
            JobFilter(state=args.state, number=args.number, since=since), limit=args.limit
        )
    finally:
        await queue.close()
    for job in jobs:
        print(_line(job))
    return 0


async def _steer(args: argparse.Namespace, settings: Settings, action: str) -> int:
    queue = await open_queue(settings)
    try:
        if action == "cancel":
            job = await queue.cancel(args.id, reason="operator")
        else:
            job = await queue.retry(args.id)
    except QueueError as error:
        print(f"voicebot: {error}", file=sys.stderr)
        return 1
    finally:
        await queue.close()
    if job.state == "dialling":
        print(f"{job.id}\tdialling: cancelled when the attempt in progress ends")
    else:
        print(_line(job))
    return 0


async def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    return await _steer(args, settings, "cancel")


async def _retry(args: argparse.Namespace, settings: Settings) -> int:
    return await _steer(args, settings, "retry")
