"""Callback queue benchmark: missed event → dialler latency, claims/s with a
deep queue, and RSS with it.

    python bench/callbacks.py [--queued 100000] [--latency-events 30] [--claims 20000]
                              [--ring-events 30]

Measured in one run, on a temporary SQLite file (WAL, as in production):

  first ring the real app (aiohttp + SQLite + the SIP dialler) with callbacks
             on, working hours all week and first_delay_s = 0: POST
             /api/v1/calls/events of a missed call → the INVITE reaches the
             manager's phone (a UDP responder in this process that notes the
             datagram's arrival and answers 486 Busy, so the attempt ends and
             the job waits for its next round). Baseline: the same POST's own
             round trip. Target: <= 1 s.
  latency    the same, with an in-process recorder as the dialler: missed
             event → the dialler's `attempt()` is called (the queue and
             scheduler alone, without SIP).
  claims/s   `--queued` due jobs inserted in bulk, then `CallbackQueue.claim()`
             in a loop (one transaction per claim: the UPDATE ... RETURNING,
             the daily-cap count, the attempt row), for `--claims`/4 claims,
             and `claim_batch(50)` (what the scheduler does with 50 free call
             slots: the same statements for up to 50 jobs) for `--claims`.
             Also the scheduler end to end (claim → no-op dialler → finish,
             `max_concurrent_calls = 50`). Baseline: bare `BEGIN IMMEDIATE;
             UPDATE one row; COMMIT` transactions on the same connection.
             Target: >= 2 000 claims/s.
  RSS        of this process after opening the queue and starting the
             scheduler over the deep queue, against before seeding.

Numbers are printed, not asserted (DESIGN.md §5).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp
import psutil
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ports import rtp_window
from voicebot.app import VoicebotApp
from voicebot.callbacks.attempt import AttemptRequest, AttemptResult, Outcome
from voicebot.callbacks.config import numbers_from_settings, policy_from_settings
from voicebot.callbacks.queue import CallbackQueue
from voicebot.callbacks.scheduler import CallbackScheduler
from voicebot.settings import CallbackSettings, Settings

ALL_WEEK = {day: "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
CALLBACKS: dict[str, Any] = {
    "enabled": True,
    "targets": ["201"],
    "default_region": "UA",
    "timezone": "Europe/Kyiv",
    "working_hours": ALL_WEEK,
    "first_delay_s": 0,
    "min_ring_s": 0,
    "max_concurrent_calls": 50,
    "max_calls_per_number_per_day": 100,
}


class Recorder:
    """The dialler: notes when each job reached it, answers at once."""

    def __init__(self) -> None:
        self.reached: dict[int, float] = {}
        self.events: dict[int, asyncio.Event] = {}

    async def attempt(self, request: AttemptRequest) -> AttemptResult:
        self.reached[request.job_id] = time.perf_counter()
        self.events.setdefault(request.job_id, asyncio.Event()).set()
        return AttemptResult(Outcome.COMPLETED, target="201")


class Phone(asyncio.DatagramProtocol):
    """The manager's phone: notes when each INVITE arrives (a new Call-ID), and
    answers 486 Busy Here so the bot's attempt ends at once."""

    WANTED = ("via", "v", "from", "f", "to", "t", "call-id", "i", "cseq")

    def __init__(self) -> None:
        self.rang: dict[str, float] = {}
        self.arrived = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        at = time.perf_counter()
        head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace").split("\r\n")
        if not head[0].startswith("INVITE "):
            return  # the ACK of our 486
        kept = [h for h in head[1:] if h.split(":", 1)[0].strip().lower() in self.WANTED]
        call_id = next(
            h.split(":", 1)[1].strip() for h in kept if h.lower().startswith(("call-id", "i:"))
        )
        self.rang.setdefault(call_id, at)
        self.arrived.set()
        lines = [h + ";tag=bench" if h.lower().startswith(("to:", "t:")) else h for h in kept]
        reply = "\r\n".join(["SIP/2.0 486 Busy Here", *lines, "Content-Length: 0", "", ""])
        assert self.transport is not None
        self.transport.sendto(reply.encode(), addr)


def missed_event(call_id: str, n: int) -> dict[str, str]:
    """A PBX event: client n's 20 s inbound call, missed, ending now."""
    ended = datetime.now(UTC)
    return {
        "call_id": call_id,
        "direction": "inbound",
        "caller": f"+38044{n:07d}",
        "callee": "+380440000000",
        "status": "missed",
        "started_at": (ended - timedelta(seconds=20)).isoformat(),
        "ended_at": ended.isoformat(),
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def app_settings(database: Path, rtp_calls: int, **sip: Any) -> Settings:
    """The running app with CALLBACKS on, any SIP and HTTP port."""
    low, high = rtp_window(rtp_calls)
    return Settings(
        sip={"bind_port": 0, "rtp_port_min": low, "rtp_port_max": high, **sip},
        storage={"database": database},
        http={"port": 0},
        callbacks=CALLBACKS,
        log={"level": "warning"},
    )


async def post_missed(
    http: aiohttp.ClientSession, body: dict[str, Any], posts: list[float]
) -> float:
    """POST one missed event; its round trip goes to `posts`. Returns when it was sent."""
    sent = time.perf_counter()
    async with http.post("/api/v1/calls/events", json=body) as response:
        assert response.status == 201, await response.text()
        posts.append(time.perf_counter() - sent)
    return sent


def print_against_posts(title: str, posts: list[float], what: str, reached: list[float]) -> None:
    """`reached` (seconds from each POST) against the POSTs' own round trips."""
    print(title)
    post_p50, p50 = statistics.median(posts), statistics.median(reached)
    for label, values, tail in (
        ("POST /api/v1/calls/events round trip (baseline):", posts, ""),
        (what, reached, f"  max {max(reached) * 1000:.1f} ms"
                        f"  (target <= 1000 ms; {p50 / post_p50:.1f}x the POST)"),
    ):  # fmt: skip
        print(
            f"  {label:<48} p50 {statistics.median(values) * 1000:7.1f} ms"
            f"  p99 {pct(values, 0.99) * 1000:7.1f} ms{tail}"
        )


async def latency(workdir: Path, events: int) -> None:
    recorder = Recorder()
    app = VoicebotApp(app_settings(workdir / "latency.db", 2), dialler=recorder)
    await app.start()
    posts: list[float] = []
    to_dialler: list[float] = []
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as http:
            for n in range(events):
                sent = await post_missed(http, missed_event(f"bench-{n}", n), posts)
                assert app.callback_queue is not None
                jobs, _ = await app.callback_queue.list(_filter(), limit=1)
                job_id = jobs[0].id
                await asyncio.wait_for(
                    recorder.events.setdefault(job_id, asyncio.Event()).wait(), 10
                )
                to_dialler.append(recorder.reached[job_id] - sent)
    finally:
        await app.stop()
    print_against_posts(
        f"latency: {events} missed events, one at a time, through the running app",
        posts,
        "missed event -> dialler.attempt():",
        to_dialler,
    )


async def first_ring(workdir: Path, events: int) -> None:
    loop = asyncio.get_running_loop()
    phone = Phone()
    transport, _ = await loop.create_datagram_endpoint(lambda: phone, local_addr=("127.0.0.1", 0))
    phone_port = transport.get_extra_info("sockname")[1]
    # the real SIP dialler (sip.server is set)
    app = VoicebotApp(app_settings(workdir / "ring.db", 4, server="127.0.0.1", port=phone_port))
    await app.start()
    posts: list[float] = []
    to_ring: list[float] = []
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{app.http_port}") as http:
            for n in range(events):
                body = missed_event(f"ring-{n}", n)
                before = len(phone.rang)
                phone.arrived.clear()
                sent = await post_missed(http, body, posts)
                while len(phone.rang) == before:
                    await asyncio.wait_for(phone.arrived.wait(), 10)
                    phone.arrived.clear()
                to_ring.append(max(phone.rang.values()) - sent)
    finally:
        await app.stop()
        transport.close()
    print_against_posts(
        f"first ring: {events} missed events, one at a time, the real SIP dialler",
        posts,
        "missed event -> INVITE at the manager's phone:",
        to_ring,
    )


def _filter() -> Any:
    from voicebot.callbacks.queue import JobFilter

    return JobFilter()


async def open_queue(path: Path, settings: CallbackSettings) -> CallbackQueue:
    return await CallbackQueue.open(
        path,
        numbers_from_settings(settings),
        policy_from_settings(settings),
        targets=settings.targets,
        lease_s=settings.lease_s,
    )


async def seed(queue: CallbackQueue, count: int) -> float:
    """`count` due jobs, inserted in bulk (the intake's speed is not what is measured)."""
    started = time.perf_counter()
    now = time.time()
    times = (now - 120, now - 120, now, now)
    rows = [
        (f"+38044{n:07d}", f"044{n:07d}", f"+38044{n:07d}", now - 60 - n * 0.001, *times)
        for n in range(count)
    ]
    conn = queue.connection
    await conn.execute("BEGIN IMMEDIATE")
    await conn.executemany(
        "INSERT INTO callback_jobs (client_number, raw_number, dial, state, source, round,"
        " due_at, first_missed_at, missed_at, created_at, updated_at)"
        " VALUES (?, ?, ?, 'queued', 'pbx', 1, ?, ?, ?, ?, ?)",
        rows,
    )
    await conn.execute("COMMIT")
    return time.perf_counter() - started


async def claims(workdir: Path, queued: int, count: int) -> None:
    settings = CallbackSettings(**CALLBACKS)
    process = psutil.Process(os.getpid())
    rss_before = process.memory_info().rss
    path = workdir / "claims.db"
    queue = await open_queue(path, settings)
    try:
        seeded = await seed(queue, queued)
        conn = queue.connection
        # Baseline: the cheapest write transaction on the same connection.
        baseline_n = min(count, 5000)
        started = time.perf_counter()
        for n in range(baseline_n):
            await conn.execute("BEGIN IMMEDIATE")
            await conn.execute("UPDATE callback_jobs SET updated_at = ? WHERE id = ?", (n, 1))
            await conn.execute("COMMIT")
        baseline = baseline_n / (time.perf_counter() - started)

        started = time.perf_counter()
        claimed = 0
        for _ in range(count // 4):
            if await queue.claim("bench") is None:
                break
            claimed += 1
        claim_rate = claimed / (time.perf_counter() - started)

        started = time.perf_counter()
        batched = 0
        while batched < count:
            got = await queue.claim_batch("bench", 50)
            if not got:
                break
            batched += len(got)
        batch_rate = batched / (time.perf_counter() - started)

        # The scheduler end to end over what is left.
        recorder = Recorder()
        scheduler = CallbackScheduler(queue, recorder, max_concurrent_calls=50)
        started = time.perf_counter()
        await scheduler.start()
        deadline = started + 5.0
        while time.perf_counter() < deadline and len(recorder.reached) < count:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        rss_running = process.memory_info().rss
        await scheduler.stop()
        scheduled = len(recorder.reached)
        async with conn.execute(
            "SELECT count(*) FROM callback_jobs WHERE state = 'queued'"
        ) as cursor:
            left = (await cursor.fetchone() or (0,))[0]
    finally:
        await queue.close()
    size = sum(f.stat().st_size for f in workdir.glob("claims.db*"))
    print(
        f"claims: {queued} jobs queued (bulk insert {seeded:.1f} s), database {size / 1e6:.1f} MB"
    )
    print(f"  baseline BEGIN/UPDATE/COMMIT:            {baseline:8.0f} tx/s")
    print(
        f"  CallbackQueue.claim(), one at a time:    {claim_rate:8.0f} claims/s"
        f"  ({claimed} claims; {claim_rate / baseline:.2f}x baseline)"
    )
    print(
        f"  CallbackQueue.claim_batch(50):           {batch_rate:8.0f} claims/s"
        f"  ({batched} claims; {batch_rate / baseline:.2f}x baseline; target >= 2000)"
    )
    print(
        f"  scheduler claim -> dialler -> finish:    {scheduled / elapsed:8.0f} attempts/s"
        f"  ({scheduled} in {elapsed:.1f} s, 50 at once; {left} still queued)"
    )
    print(
        f"RSS: {rss_before / 1e6:.1f} MB before the queue, {rss_running / 1e6:.1f} MB with"
        f" {queued} queued and the scheduler running (+{(rss_running - rss_before) / 1e6:.1f} MB)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--claims", type=int, default=20_000)
    parser.add_argument("--latency-events", type=int, default=30)
    parser.add_argument("--ring-events", type=int, default=30)
    args = parser.parse_args()
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(40),  # errors only
    )
    with tempfile.TemporaryDirectory(prefix="bench-callbacks-") as tmp:
        workdir = Path(tmp)
        await claims(workdir, args.queued, args.claims)
        await latency(workdir, args.latency_events)
        await first_ring(workdir, args.ring_events)


if __name__ == "__main__":
    asyncio.run(main())
