"""Webhook delivery benchmark: throughput and enqueue → received latency.

    python bench/webhooks.py [--events 2000] [--latency-events 200]

A receiver runs in its own process on loopback (answers 200, records the
arrival time of every webhook-id with time.monotonic(), which is the same
system-wide CLOCK_MONOTONIC in both processes). Measured in one run:

  baseline   signed POSTs straight from memory (no outbox), 4 at a time
  outbox     each event enqueued in its own committed transaction (as the
             journal does), the Dispatcher delivering from SQLite (WAL) with
             its default 4-per-endpoint concurrency, one log line per attempt
             (written to a file, as in production)
  latency    one event at a time on an idle system: commit + notify() →
             receiver, p50/p99, against a direct POST's latency

Numbers are printed, not asserted (DESIGN.md §5).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import aiosqlite
import structlog
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voicebot.journal.database import connector
from webhooks import (
    DeliveryPolicy,
    Dispatcher,
    Endpoint,
    SystemClock,
    encode_body,
    enqueue,
    new_webhook_id,
    post_signed,
)

SECRET = "whsec_" + base64.b64encode(b"bench-secret-0123456789abcdef012").decode()


# -- receiver process -------------------------------------------------------


def _receiver_main(port_pipe) -> None:
    arrivals: dict[str, float] = {}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrivals.setdefault(request.headers["webhook-id"], time.monotonic())
        return web.Response(text="ok")

    async def stats(request: web.Request) -> web.Response:
        if request.query.get("times"):
            return web.json_response(arrivals)
        return web.json_response({"count": len(arrivals)})

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        return web.Response(text="ok")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        app.router.add_get("/stats", stats)
        app.router.add_post("/reset", reset)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_pipe.send(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(serve())


class ReceiverProcess:
    def __init__(self) -> None:
        parent, child = multiprocessing.Pipe()
        self.process = multiprocessing.get_context("spawn").Process(
            target=_receiver_main, args=(child,), daemon=True
        )
        self.process.start()
        self.port = parent.recv()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = f"{self.base}/hook"

    async def count(self, session: aiohttp.ClientSession) -> int:
        async with session.get(f"{self.base}/stats") as response:
            return int((await response.json())["count"])

    async def times(self, session: aiohttp.ClientSession) -> dict[str, float]:
        async with session.get(f"{self.base}/stats?times=1") as response:
            return dict(await response.json())

    async def reset(self, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{self.base}/reset"):
            pass

    async def wait_count(self, session: aiohttp.ClientSession, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while await self.count(session) < n:
            if time.monotonic() > deadline:
                raise SystemExit(f"receiver got {await self.count(session)} of {n} in time")
            await asyncio.sleep(0.02)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(5)


# -- the three measurements ------------------------------------------------


async def baseline_throughput(receiver: ReceiverProcess, n: int, concurrency: int = 4) -> float:
    clock = SystemClock()
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for i in range(n):
        body = encode_body("call.categorized", {"n": i}, clock.now()).encode()
        queue.put_nowait((new_webhook_id(), body))
    async with aiohttp.ClientSession() as session:
        await receiver.reset(session)

        async def worker() -> None:
            while not queue.empty():
                webhook_id, body = queue.get_nowait()
                result = await post_signed(
                    session, receiver.url, [SECRET], webhook_id, body,
                    timestamp=int(time.time()), timeout_s=15,
                )  # fmt: skip
                assert result.ok, result

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        await receiver.wait_count(session, n, 60)
        return n / (time.perf_counter() - started)


async def outbox_throughput(receiver: ReceiverProcess, db: Path, n: int) -> tuple[float, float]:
    endpoint = Endpoint(receiver.url, [SECRET])
    clock = SystemClock()
    async with aiohttp.ClientSession() as session, aiosqlite.connect(db) as conn:
        await receiver.reset(session)
        dispatcher = Dispatcher(connector(db), [endpoint], DeliveryPolicy(), clock)
        await dispatcher.start()
        try:
            started = time.perf_counter()
            for i in range(n):
                await enqueue(conn, "call.categorized", {"n": i}, [endpoint], now=clock.now())
                await conn.commit()
                dispatcher.notify()
                if i % 20 == 0:
                    await asyncio.sleep(0)  # an application also does other work
            enqueued = time.perf_counter() - started
            await receiver.wait_count(session, n, 120)
            elapsed = time.perf_counter() - started
        finally:
            await dispatcher.stop()
    assert dispatcher.metrics.delivered >= n, dispatcher.metrics
    return n / elapsed, n / enqueued


async def outbox_latency(receiver: ReceiverProcess, db: Path, n: int) -> list[float]:
    endpoint = Endpoint(receiver.url, [SECRET])
    clock = SystemClock()
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as session, aiosqlite.connect(db) as conn:
        await receiver.reset(session)
        dispatcher = Dispatcher(connector(db), [endpoint], DeliveryPolicy(), clock)
        await dispatcher.start()
        try:
            await asyncio.sleep(0.1)
            for i in range(n):
                before = dispatcher.metrics.delivered
                t0 = time.monotonic()
                [webhook_id] = await enqueue(
                    conn, "call.categorized", {"n": i}, [endpoint], now=clock.now()
                )
                await conn.commit()
                dispatcher.notify()
                sent[webhook_id] = t0
                while dispatcher.metrics.delivered == before:
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.01)  # idle between calls
            arrivals = await receiver.times(session)
        finally:
            await dispatcher.stop()
    return [(arrivals[i] - t0) * 1000 for i, t0 in sent.items()]


async def direct_latency(receiver: ReceiverProcess, n: int) -> list[float]:
    clock = SystemClock()
    sent: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        await receiver.reset(session)
        for i in range(n):
            t0 = time.monotonic()
            webhook_id = new_webhook_id()
            body = encode_body("call.categorized", {"n": i}, clock.now()).encode()
            sent[webhook_id] = t0
            await post_signed(
                session, receiver.url, [SECRET], webhook_id, body,
                timestamp=int(time.time()), timeout_s=15,
            )  # fmt: skip
            await asyncio.sleep(0.01)
        arrivals = await receiver.times(session)
    return [(arrivals[i] - t0) * 1000 for i, t0 in sent.items()]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "webhooks.log"
        log_file = log_path.open("w")
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
            logger_factory=structlog.PrintLoggerFactory(file=log_file),
        )
        receiver = ReceiverProcess()
        try:
            db = Path(tmp) / "bench.db"
            await baseline_throughput(receiver, 200)  # warm up both sides
            base_rate = baseline_throughput(receiver, args.events)
            base = await base_rate
            rate, enqueue_rate = await outbox_throughput(receiver, db, args.events)
            direct = await direct_latency(receiver, args.latency_events)
            latency = await outbox_latency(receiver, db, args.latency_events)
        finally:
            receiver.stop()
            log_file.close()
        log_lines = log_path.read_text().splitlines()
        errors = sum('"level": "error"' in line for line in log_lines)
    print(
        f"webhooks bench: {args.events} events, 1 endpoint on loopback, receiver in its own process"
    )
    print(f"  baseline direct POST (no outbox)   {base:8.0f} events/s")
    print(
        f"  outbox + dispatcher                {rate:8.0f} events/s"
        f"   ({rate / base:.2f}x baseline; enqueue+commit alone {enqueue_rate:.0f}/s)"
    )
    print(
        f"  latency enqueue→received (idle)    p50 {percentile(latency, 50):6.2f} ms"
        f"   p99 {percentile(latency, 99):6.2f} ms   max {max(latency):6.2f} ms"
        f"   (n={len(latency)})"
    )
    print(
        f"  latency direct POST→received       p50 {percentile(direct, 50):6.2f} ms"
        f"   p99 {percentile(direct, 99):6.2f} ms"
        f"   (outbox adds {statistics.median(latency) - statistics.median(direct):.2f} ms p50)"
    )
    print(f"  dispatcher log: {len(log_lines)} lines, {errors} errors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--latency-events", type=int, default=200)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
