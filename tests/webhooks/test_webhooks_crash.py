"""Crash safety with a real process: SIGKILL while deliveries are in flight.

The process under test is a real `voicebot run`, configured by environment
(it embeds the dispatcher next to the SIP user agent). The test process
plays the application (it enqueues 200 events into the SQLite file) and the
receiver: first down (connection refused), then up but hanging, so requests
are in flight when the dispatcher is killed. After a restart with the
receiver answering, every webhook-id must arrive — at least once, none missing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiosqlite
from webhooks_testkit import SECRET, Receiver

from tests.ports import free_port
from webhooks import Endpoint, SystemClock, enqueue
from webhooks.outbox import count_by_status

REPO = Path(__file__).resolve().parents[2]
EVENTS = 200


def bot_environment(db_path: Path, url: str) -> dict[str, str]:
    """`voicebot run` configured by environment only: the outbox in `db_path`,
    one endpoint, a fast retry schedule, free SIP/HTTP ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    env.update(
        PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        VOICEBOT_STORAGE__DATABASE=str(db_path),
        VOICEBOT_SIP__BIND_PORT="0",
        VOICEBOT_HTTP__PORT="0",
        VOICEBOT_WEBHOOKS__ENDPOINTS=json.dumps([{"url": url, "secret": SECRET}]),
        VOICEBOT_WEBHOOKS__TIMEOUT_S="30",
        VOICEBOT_WEBHOOKS__RETRY_SCHEDULE_S=json.dumps([0] + [0.2] * 40),
        VOICEBOT_WEBHOOKS__POLL_INTERVAL_S="0.1",
        VOICEBOT_LOG__LEVEL="debug",
    )
    return env


def spawn(db_path: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "voicebot", "run"],
            cwd=db_path.parent,
            env=bot_environment(db_path, url),
            stdout=out,
            stderr=out,
        )


async def wait_until(predicate, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{log.read_text()[-3000:]}")
        await asyncio.sleep(0.05)


async def test_sigkill_mid_flight_loses_nothing(
    conn: aiosqlite.Connection, db_path: Path, tmp_path: Path
) -> None:
    port = free_port(udp=False)
    url = f"http://127.0.0.1:{port}/hook"
    log = tmp_path / "dispatcher.log"
    endpoint = Endpoint(url, [SECRET])
    expected: set[str] = set()
    for i in range(EVENTS):
        expected.update(
            await enqueue(conn, "call.categorized", {"n": i}, [endpoint], now=SystemClock().now())
        )
        if i % 50 == 49:
            await conn.commit()
    await conn.commit()
    assert len(expected) == EVENTS

    async def attempts_made() -> int:
        async with conn.execute("SELECT COUNT(*) FROM webhooks_deliveries WHERE attempts > 0") as c:
            return (await c.fetchone())[0]

    async def in_flight() -> int:
        return (await count_by_status(conn))["in_flight"]

    receiver = Receiver([SECRET])
    first = spawn(db_path, url, log)
    try:
        # 1. receiver down: attempts fail with connection refused and are rescheduled
        await wait_until(lambda: _ge(attempts_made, 40), 10, "refused attempts", log)
        assert len(receiver.received) == 0

        # 2. receiver up but answering 20 and then hanging: requests in flight
        receiver.script = ["ok"] * 20
        receiver.mode = "hang"
        await receiver.start(port=port)
        await wait_until(lambda: _ge(in_flight, 4), 10, "requests in flight", log)
        await wait_until(lambda: _true(len(receiver.received) >= 24), 10, "hanging requests", log)

        # 3. crash
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=5) == -signal.SIGKILL
        assert await in_flight() >= 4, "the kill happened with deliveries in flight"
        counts = await count_by_status(conn)
        assert counts["delivered"] < EVENTS

        # 4. restart with the receiver answering
        receiver.mode = "ok"
        second = spawn(db_path, url, log)
        try:
            await receiver.wait_for(EVENTS, timeout=15)
            await wait_until(
                lambda: _eq_delivered(conn, EVENTS), 10, "all rows marked delivered", log
            )
        finally:
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=10) == 0
    finally:
        if first.poll() is None:
            first.kill()
        await receiver.stop()

    received = [r.webhook_id for r in receiver.received if r.verified]
    assert set(received) == expected, "every webhook-id arrived"
    assert all(r.verified for r in receiver.received), "all signatures verify"
    assert "webhook.recovered" in log.read_text()
    assert len(received) - len(expected) >= 4, "in-flight ones came again, same webhook-id"


async def _ge(probe, n: int) -> bool:
    return await probe() >= n


async def _true(value: bool) -> bool:
    return value


async def _eq_delivered(conn: aiosqlite.Connection, n: int) -> bool:
    return (await count_by_status(conn))["delivered"] == n
