"""`voicebot webhooks list | replay | enable | test`."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import aiosqlite
import pytest
from webhooks_testkit import SECRET, Receiver

from voicebot.cli import main
from voicebot.journal.database import connector, open_database
from voicebot.settings import load_settings
from voicebot.webhook_service import build_dispatcher, endpoints_from_settings
from webhooks import (
    AttemptResult,
    DeliveryPolicy,
    Dispatcher,
    Endpoint,
    SystemClock,
    enqueue,
)
from webhooks.outbox import count_by_status

REPO = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:9/hook"


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    db = tmp_path / "data" / "voicebot.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICEBOT_CONFIG", raising=False)
    monkeypatch.setenv("VOICEBOT_STORAGE__DATABASE", str(db))
    monkeypatch.setenv(
        "VOICEBOT_WEBHOOKS__ENDPOINTS",
        json.dumps([{"url": URL, "secret": [SECRET], "events": ["call.*"]}]),
    )
    monkeypatch.setenv("VOICEBOT_WEBHOOKS__MAX_ATTEMPTS", "1")
    return db


async def _seed(db: Path) -> list[str]:
    """Two events: one delivered, one dead-lettered (receiver said 500)."""
    db.parent.mkdir(parents=True, exist_ok=True)
    endpoint = Endpoint(URL, [SECRET])
    conn = await open_database(db)
    try:
        ids = []
        for n in range(2):
            ids += await enqueue(conn, "call.categorized", {"n": n}, [endpoint], now=_now())
    finally:
        await conn.close()
    answers = iter([200, 500])

    async def sender(*_: object) -> AttemptResult:
        return AttemptResult(status=next(answers), body=b"boom")

    policy = DeliveryPolicy(schedule=(0,), concurrency_per_endpoint=1)
    async with Dispatcher(connector(db), [endpoint], policy, sender=sender) as d:
        while await d.run_once():
            pass
    return ids


def _now():
    return SystemClock().now()


async def _counts(db: Path) -> dict[str, int]:
    async with aiosqlite.connect(db) as conn:
        return await count_by_status(conn)


def test_settings_map_onto_webhooks_types(configured: Path) -> None:
    settings = load_settings()
    [endpoint] = endpoints_from_settings(settings.webhooks)
    assert (endpoint.url, endpoint.secrets, endpoint.events) == (URL, [SECRET], ["call.*"])
    dispatcher = build_dispatcher(settings)
    assert dispatcher.policy.max_attempts == 1 and dispatcher.policy.timeout_s == 15


def test_list_and_replay(configured: Path, capsys: pytest.CaptureFixture[str]) -> None:
    delivered, failed = asyncio.run(_seed(configured))

    assert main(["webhooks", "list"]) == 0
    out = capsys.readouterr().out
    assert delivered in out and failed in out and "HTTP 500: boom" in out
    assert "pending 0, in_flight 0, delivered 1, failed 1" in out

    assert main(["webhooks", "list", "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert failed in out and delivered not in out

    assert main(["webhooks", "replay", "--failed"]) == 0
    assert "re-queued 1 delivery" in capsys.readouterr().out
    assert asyncio.run(_counts(configured))["pending"] == 1
    assert main(["webhooks", "list", "--status", "pending"]) == 0
    assert failed in capsys.readouterr().out

    assert main(["webhooks", "replay", delivered]) == 0
    assert asyncio.run(_counts(configured))["pending"] == 2
    assert main(["webhooks", "replay", "msg_nope"]) == 1
    assert main(["webhooks", "enable", URL]) == 1


async def test_test_command_sends_a_signed_ping(receiver: Receiver, tmp_path: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")},
        "PYTHONPATH": str(REPO),
        "VOICEBOT_STORAGE__DATABASE": str(tmp_path / "v.db"),
    }

    async def run(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voicebot", "webhooks", "test", *args,
            cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await proc.communicate()
        return proc.returncode or 0, out.decode()

    code, out = await run(receiver.url, "--secret", SECRET)
    assert code == 0, out
    assert "HTTP 200" in out and '{"ok": true}' in out and "Content-Type: application/json" in out
    [ping] = receiver.received
    assert ping.verified and json.loads(ping.body)["type"] == "ping"

    receiver.mode = "500"
    code, out = await run(receiver.url, "--secret", SECRET)
    assert code == 1 and "HTTP 500" in out

    code, out = await run(receiver.url)  # no secret anywhere
    assert code == 2 and "no secret" in out
