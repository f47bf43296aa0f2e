"""Another process holds the database's write lock from before the call is
answered until the call is over, well after the manager confirmed.

The call must not stall at answer time; "saved" may only be said once the
entry is durable (here: in the fsync'd spool, as the lock outlives the
journal's write deadline); and once the lock is gone the spool is replayed
into the journal and the webhook outbox, once.
"""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import sys
import time

from tests.integration.conftest import MakeBot, target, wait_rows
from tests.polling import until
from voicebot.app import VoicebotApp
from voicebot.journal.spool import spool_path
from voicebot.softphone import KeyingStyle, place_call

SECRET = "whsec_" + base64.b64encode(b"voicebot-locked-db-secret-012345").decode()

HOLD_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()  # held until the test lets go
conn.execute("ROLLBACK")
"""


async def test_saved_is_said_only_once_stored_and_the_spool_reaches_the_journal(
    make_bot: MakeBot,
) -> None:
    bot = await make_bot(
        storage={"write_deadline_s": 3, "spool_replay_interval_s": 0.5},
        webhooks={"endpoints": [{"url": "http://127.0.0.1:9/hook", "secret": SECRET}]},
    )
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLD_LOCK,
        str(bot.settings.storage.database),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        await locked_through_a_call(bot, holder)
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def locked_through_a_call(bot: VoicebotApp, holder: asyncio.subprocess.Process) -> None:
    database = bot.settings.storage.database
    spool = spool_path(database)
    assert holder.stdin is not None and holder.stdout is not None
    assert (await asyncio.wait_for(holder.stdout.readline(), 10)).strip() == b"locked"
    locked_at = time.monotonic()

    spooled_at: list[float] = []

    async def watch_spool() -> None:
        # When the spool was written, on the monotonic clock `heard_at` uses:
        # its mtime, mapped through a wall/monotonic pair read together. A
        # poll's own lateness (10 ms here, more on a busy loop) would exceed
        # the few ms between the fsync'd write and "saved" reaching the phone;
        # the kernel's mtime is never later than the write itself.
        while not spooled_at:
            if spool.exists() and (stat := spool.stat()).st_size > 0:
                wall, mono = time.time_ns(), time.monotonic()
                spooled_at.append(mono - (wall - stat.st_mtime_ns) / 1e9)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch_spool())
    try:
        report = await place_call(
            target(bot),
            "3#1500#1",
            headers={"X-Call-ID": "pbx-locked"},
            style=KeyingStyle(listen_s=0.8, timeout_s=40),
        )
    finally:
        watcher.cancel()
    # The lock was held from before the INVITE: the call still ran its menu.
    assert report.answered and report.heard[0] == "greeting", report
    assert report.ended == "bot hung up", report
    assert report.heard[-1] == "saved", report.heard
    saved_at = report.heard_at[-1]
    # "saved" came after the entry was durable, and without waiting out the lock.
    assert spooled_at, "the entry never reached the spool"
    assert spooled_at[0] <= saved_at, (spooled_at[0] - locked_at, saved_at - locked_at)
    # The lock is still held (the holder lets go only when told): "saved" was
    # said under it, not after waiting it out. Now let go.
    assert holder.returncode is None, "the lock holder ended before the call did"
    holder.stdin.close()
    assert await asyncio.wait_for(holder.wait(), 10) == 0
    (row,) = await wait_rows(
        bot, lambda rows: len(rows) == 1 and rows[0]["status"] != "in_progress", timeout=15
    )
    assert row["status"] == "confirmed", row
    assert row["digits"] == "3#1500#1" and row["value"] == "1500", row
    assert row["pbx_call_id"] == "pbx-locked", row
    with sqlite3.connect(database) as conn:
        bodies = [body for (body,) in conn.execute("SELECT body FROM webhooks_messages")]
    conn.close()
    assert len(bodies) == 1 and row["call_id"] in bodies[0], bodies

    # Replayed, so the spool is emptied (replaying twice is covered in tests/journal).
    await until(lambda: not spool.exists(), 5, what="the spool replayed and removed")
