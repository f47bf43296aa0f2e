"""The spool on disk: what the journal could not take is kept, fsync'd, and
replayed into the journal and the outbox exactly once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.journal.test_journal import ENDPOINT, confirmed, start
from voicebot.journal import Journal
from voicebot.journal.spool import Spool, decode_entry, encode_entry, spool_path


def outbox_count(database: Path) -> int:
    with sqlite3.connect(database) as conn:
        count = conn.execute("SELECT COUNT(*) FROM webhooks_messages").fetchone()[0]
    conn.close()
    return int(count)


def test_an_entry_survives_the_round_trip() -> None:
    assert decode_entry(encode_entry(start(), confirmed())) == (start(), confirmed())


async def test_replay_moves_entries_into_the_journal_once(tmp_path: Path) -> None:
    database = tmp_path / "j.db"
    spool = Spool(spool_path(database))
    await spool.append(start("call_a"), confirmed())
    await spool.append(start("call_b"), confirmed())
    assert spool.path == tmp_path / "j.db.spool.jsonl" and spool.pending()
    journal = await Journal.open(database, [ENDPOINT])
    moved = await spool.replay(journal)
    assert [s.call_id for s, _, ids in moved if len(ids) == 1] == ["call_a", "call_b"]
    assert not spool.pending()
    # The same entries again (a crash between commit and the spool's rewrite):
    await spool.append(start("call_a"), confirmed())
    again = await spool.replay(journal)
    rows = await journal.recent()
    await journal.close()
    assert [ids for _, _, ids in again] == [[]]
    assert sorted(r.call_id for r in rows) == ["call_a", "call_b"]
    assert all(r.status == "confirmed" for r in rows)
    assert outbox_count(database) == 2


async def test_a_line_that_is_not_an_entry_is_set_aside(tmp_path: Path) -> None:
    database = tmp_path / "j.db"
    spool = Spool(spool_path(database))
    await spool.append(start("call_a"), confirmed())
    with spool.path.open("a") as handle:
        handle.write('{"half a line\n')
    journal = await Journal.open(database, [ENDPOINT])
    moved = await spool.replay(journal)
    await journal.close()
    assert [s.call_id for s, _, _ in moved] == ["call_a"]
    assert not spool.pending()
    assert spool.rejected_path.read_text() == '{"half a line\n'
