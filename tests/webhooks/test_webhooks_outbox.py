"""Signing, the outbox write, the schema and the retry arithmetic."""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiosqlite
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from webhooks_testkit import SECRET, SECRET_2

from voicebot.journal.database import open_database
from webhooks import DeliveryPolicy, Endpoint, enqueue, sign, signed_headers
from webhooks.outbox import list_deliveries
from webhooks.retry import next_delay, parse_retry_after
from webhooks.schema import SCHEMA_VERSION
from webhooks.signing import decode_secret

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
A = Endpoint("http://a.example/hook", [SECRET], ["*"])
B = Endpoint("http://b.example/hook", [SECRET], ["call.categorized"])
C = Endpoint("http://c.example/hook", [SECRET], ["callback.*"])


# -- signatures ------------------------------------------------------------


def test_signature_matches_the_reference_library() -> None:
    body = b'{"type":"ping","timestamp":"2026-01-05T09:00:00Z","data":{}}'
    ts = 1767603600
    ours = sign(SECRET, "msg_1", ts, body)
    theirs = Webhook(SECRET).sign("msg_1", datetime.fromtimestamp(ts, UTC), body.decode())
    assert ours == theirs


def test_reference_library_verifies_our_headers_unchanged() -> None:
    body = json.dumps({"type": "call.categorized", "data": {"value": 1500}}).encode()
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers([SECRET], "msg_abc", now, body)
    assert headers["Content-Type"] == "application/json"
    assert Webhook(SECRET).verify(body, headers)["data"] == {"value": 1500}
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body + b" ", headers)


def test_rotation_sends_every_signature_and_either_secret_verifies() -> None:
    body = b'{"type":"ping"}'
    now = int(datetime.now(UTC).timestamp())
    headers = signed_headers([SECRET, SECRET_2], "msg_rot", now, body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(body, headers)
    Webhook(SECRET_2).verify(body, headers)


def test_secret_decoding() -> None:
    unpadded = "whsec_" + base64.b64encode(b"abcd1").decode().rstrip("=")
    assert decode_secret(unpadded) == b"abcd1"
    for bad in ("abcd", "whsec_", "whsec_!!!"):
        with pytest.raises(ValueError):
            decode_secret(bad)
    with pytest.raises(ValueError):
        Endpoint("http://x", ["not-a-whsec"])


def test_endpoint_repr_hides_secrets() -> None:
    assert SECRET not in repr(A)


# -- the outbox write ------------------------------------------------------


async def test_enqueue_fans_out_to_matching_endpoints_with_one_webhook_id(
    conn: aiosqlite.Connection,
) -> None:
    ids = await enqueue(conn, "call.categorized", {"call_id": "c1"}, [A, B, C], now=NOW)
    await conn.commit()
    assert len(ids) == 2 and len(set(ids)) == 1 and ids[0].startswith("msg_")
    rows = await list_deliveries(conn)
    assert sorted(r.endpoint_url for r in rows) == [A.url, B.url]
    assert {r.status for r in rows} == {"pending"}
    assert await enqueue(conn, "callback.failed", {}, [B], now=NOW) == []
    assert len(await enqueue(conn, "callback.failed", {}, [A, B, C], now=NOW)) == 2


async def test_body_is_standard_webhooks_shape_fixed_at_enqueue(
    conn: aiosqlite.Connection,
) -> None:
    data = {"call_id": "c1", "value": 1500.5, "manager": "Олена"}
    [webhook_id] = await enqueue(conn, "call.categorized", data, [A], now=NOW)
    async with conn.execute(
        "SELECT body FROM webhooks_messages WHERE id = ?", (webhook_id,)
    ) as cursor:
        (body,) = await cursor.fetchone()
    assert json.loads(body) == {
        "type": "call.categorized",
        "timestamp": "2026-01-05T09:00:00Z",
        "data": data,
    }


async def test_enqueue_commits_with_the_callers_row_or_not_at_all(
    conn: aiosqlite.Connection,
) -> None:
    # The application's connection is in autocommit mode: its transactions are explicit.
    await conn.execute("CREATE TABLE caller_rows (id INTEGER PRIMARY KEY, code TEXT)")

    await conn.execute("BEGIN IMMEDIATE")
    await conn.execute("INSERT INTO caller_rows (code) VALUES ('1')")
    await enqueue(conn, "call.categorized", {"n": 1}, [A], now=NOW)
    assert conn.in_transaction, "enqueue must not commit the caller's transaction"
    await conn.execute("ROLLBACK")
    assert await list_deliveries(conn) == []

    await conn.execute("BEGIN IMMEDIATE")
    await conn.execute("INSERT INTO caller_rows (code) VALUES ('2')")
    await enqueue(conn, "call.categorized", {"n": 2}, [A], now=NOW)
    await conn.execute("COMMIT")
    async with conn.execute("SELECT COUNT(*) FROM caller_rows") as cursor:
        assert (await cursor.fetchone())[0] == 1
    assert len(await list_deliveries(conn)) == 1


async def test_unserialisable_data_writes_nothing(conn: aiosqlite.Connection) -> None:
    with pytest.raises(TypeError):
        await enqueue(conn, "call.categorized", {"when": object()}, [A], now=NOW)
    with pytest.raises(ValueError):
        await enqueue(conn, "call.categorized", {"x": 1}, [A], now=NOW.replace(tzinfo=None))
    assert not conn.in_transaction
    assert await list_deliveries(conn) == []


async def test_schema_is_versioned_and_idempotent(db_path) -> None:
    for _ in range(2):  # the second open applies nothing again
        db = await open_database(db_path)
        async with db.execute("SELECT COUNT(*), MAX(version) FROM webhooks_schema") as cursor:
            assert tuple(await cursor.fetchone()) == (SCHEMA_VERSION, SCHEMA_VERSION)
        await db.close()


# -- retry arithmetic ------------------------------------------------------


def test_schedule_defaults_follow_the_standard_example() -> None:
    policy = DeliveryPolicy(jitter=0)
    rng = random.Random(1)
    delays = [next_delay(policy, n, rng) for n in range(1, 11)]
    assert delays == [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400, None]
    assert policy.max_attempts == 10 and policy.timeout_s == 15


def test_jitter_stays_within_bounds() -> None:
    policy = DeliveryPolicy(jitter=0.1)
    rng = random.Random(7)
    for attempts, base in enumerate(policy.schedule[1:], start=1):
        samples = [next_delay(policy, attempts, rng) for _ in range(500)]
        assert all(base * 0.9 <= s <= base * 1.1 for s in samples)  # type: ignore[operator]
        assert len(set(samples)) > 400, "jitter actually varies"


def test_retry_after_is_a_floor_and_is_clamped() -> None:
    policy = DeliveryPolicy(jitter=0)
    rng = random.Random(1)
    assert next_delay(policy, 1, rng, retry_after_s=120) == 120
    assert next_delay(policy, 1, rng, retry_after_s=1) == 5
    assert next_delay(policy, 1, rng, retry_after_s=10**9) == policy.max_retry_after_s
    assert next_delay(policy, 10, rng, retry_after_s=1) is None


def test_parse_retry_after() -> None:
    assert parse_retry_after("120", NOW) == 120
    assert parse_retry_after(format_datetime(NOW + timedelta(seconds=90), usegmt=True), NOW) == 90
    assert parse_retry_after(format_datetime(NOW - timedelta(seconds=90), usegmt=True), NOW) == 0
    assert parse_retry_after("soon", NOW) is None
    assert parse_retry_after(None, NOW) is None
