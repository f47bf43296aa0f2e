"""`voicebot import-cdr` on an Asterisk cdr_csv Master.csv: directions told
from the numbers, local times across the DST jump, bad rows skipped and
reported by line, a second import adding nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from voicebot.cli import main
from voicebot.journal.call_types import TypeRules
from voicebot.journal.calls import CallFilter, CallLog, iso

DATA = Path(__file__).parent / "data" / "Master.csv"


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICEBOT_CONFIG", raising=False)
    path = tmp_path / "voicebot.db"
    monkeypatch.setenv("VOICEBOT_STORAGE__DATABASE", str(path))
    return path


async def _calls(path: Path) -> dict[str, object]:
    log = await CallLog.open(path, TypeRules.from_settings(30, 30))
    try:
        rows, _ = await log.list(CallFilter(), limit=100)
    finally:
        await log.close()
    return {row.pbx_call_id: row for row in rows}  # type: ignore[misc]


def test_master_csv_imported_and_bad_rows_reported(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import-cdr", str(DATA), "--timezone", "Europe/Kyiv"]) == 0
    out, err = capsys.readouterr()
    assert "5 added, 0 updated, 0 already there, 3 skipped" in out
    assert "Master.csv:5: skipped: start: '29/03/2026 12:00' is not YYYY-MM-DD HH:MM:SS" in err
    assert "Master.csv:6: skipped: 3 columns, expected at least 16" in err
    assert "Master.csv:7: skipped: disposition: 'MAYBE'" in err

    calls = asyncio.run(_calls(database))
    answered = calls["1774742290.1"]
    # 02:58:10 EET to 04:00:20 EEST is 130 s of ringing across the DST jump.
    assert iso(answered.started_at) == "2026-03-29T00:58:10Z"  # type: ignore[attr-defined]
    assert (answered.wait_s, answered.talk_s) == (130.0, 300.0)  # type: ignore[attr-defined]
    assert (answered.direction, answered.manager) == ("inbound", "201")  # type: ignore[attr-defined]
    missed = calls["1774767600.3"]
    assert (missed.status, missed.wait_s, missed.client_number) == (  # type: ignore[attr-defined]
        "missed",
        25.0,
        "0501112233",
    )
    busy = calls["1774771200.5"]
    assert (busy.direction, busy.status, busy.manager) == (  # type: ignore[attr-defined]
        "outbound",
        "busy",
        "202",
    )
    assert busy.client_number == "0671234567"  # type: ignore[attr-defined]
    assert calls["1774774800.7"].direction == "internal"  # type: ignore[attr-defined]
    hashed = [key for key in calls if key.startswith("cdr-")]  # type: ignore[union-attr]
    assert len(hashed) == 1 and calls[hashed[0]].status == "failed"  # type: ignore[attr-defined]

    assert main(["import-cdr", str(DATA), "--timezone", "Europe/Kyiv"]) == 0
    assert "0 added, 0 updated, 5 already there, 3 skipped" in capsys.readouterr().out


def test_unreadable_file_and_zone_named(
    database: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["import-cdr", str(tmp_path / "nope.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["import-cdr", str(DATA), "--timezone", "Mars/Base"]) == 2
    assert "--timezone 'Mars/Base'" in capsys.readouterr().err


def test_categories_cli_add_list_remove(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["categories", "add", "7", "delivery", "--value", "12.50"]) == 0
    assert main(["categories", "add", "7", "again"]) == 1
    assert "category 7 exists" in capsys.readouterr().err
    assert main(["categories", "add", "x7", "bad"]) == 2
    assert "code" in capsys.readouterr().err
    assert main(["categories", "remove", "99"]) == 1
    assert capsys.readouterr().err == "no category 99\n"
    assert main(["categories", "remove", "7"]) == 0
    assert main(["categories", "list", "--all"]) == 0
    out = capsys.readouterr().out
    assert "12.50" in out and "(deleted)" in out
    assert "spam" in out  # seeded from the default settings on first use
