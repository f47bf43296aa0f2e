"""`voicebot calls --since` and `voicebot report NAME [--csv]` on a real SQLite
file, with the report tests' calls (the DST day in Kyiv): the CLI prints the
figures the API serves."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.app.known_calls import CALLS, as_event
from voicebot.cli import main
from voicebot.journal.call_events import CallEvent
from voicebot.journal.call_types import TypeRules
from voicebot.journal.calls import CallLog

DAY = ["--from", "2026-10-25", "--to", "2026-10-25"]


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VOICEBOT_CONFIG", raising=False)
    path = tmp_path / "data" / "voicebot.db"
    monkeypatch.setenv("VOICEBOT_STORAGE__DATABASE", str(path))
    monkeypatch.setenv("VOICEBOT_JOURNAL__TIMEZONE", "Europe/Kyiv")
    monkeypatch.setenv("VOICEBOT_JOURNAL__UNIQUE_WINDOW_DAYS", "7")
    monkeypatch.setenv("VOICEBOT_JOURNAL__TARGET_MIN_TALK_S", "60")
    return path


async def _store(path: Path, events: list[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = await CallLog.open(path, TypeRules.from_settings(7, 60))
    try:
        for body in events:
            await log.record_call_event(CallEvent.model_validate(body))
    finally:
        await log.close()


def test_calls_since_lists_only_the_span(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    events = []
    for name, age in (("fresh", timedelta(hours=2)), ("old", timedelta(days=2))):
        start = now - age
        events.append(
            {"call_id": name, "direction": "inbound", "caller": "+380501234567",
             "callee": "+380440000000", "status": "missed", "started_at": start.isoformat(),
             "ended_at": (start + timedelta(seconds=12)).isoformat(), "manager": "201"}
        )  # fmt: skip
    asyncio.run(_store(database, events))
    capsys.readouterr()  # the call log's own lines while storing

    assert main(["calls", "--since", "1d"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["ID", "STARTED", "(UTC)"]
    assert len(out) == 3 and out[-1] == "1 call"
    assert "+380501234567" in out[1] and "missed" in out[1] and "12" in out[1]

    assert main(["calls", "--since", "3d"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2 calls"
    with pytest.raises(SystemExit):
        main(["calls", "--since", "yesterday"])
    assert "expected a span like 30m, 12h, 1d or 2w" in capsys.readouterr().err


def test_report_missed_as_csv_and_as_a_table(
    database: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    asyncio.run(_store(database, [as_event(call) for call in CALLS]))
    capsysbinary.readouterr()  # the call log's own lines while storing

    assert main(["report", "missed", *DAY, "--csv"]) == 0
    raw = capsysbinary.readouterr().out
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM, for Excel
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0][:2] == ["id", "started_at"] and rows[0][-1] == "unprocessed"
    # Hand-computed from tests/app/known_calls.py: two 03:30 calls, an hour apart.
    assert [(r[1], r[5], r[7]) for r in rows[1:]] == [
        ("2026-10-25 23:59:59", "missed", "yes"),
        ("2026-10-25 10:00:00", "busy", "yes"),
        ("2026-10-25 03:30:00", "missed", "no"),
        ("2026-10-25 03:30:00", "missed", "no"),
    ]

    assert main(["report", "missed", *DAY, "--manager", "202", "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsysbinary.readouterr().out.decode("utf-8-sig"))))
    assert [r[5] for r in rows[1:]] == ["busy", "missed"]

    assert main(["report", "summary", *DAY]) == 0
    text = capsysbinary.readouterr().out.decode("utf-8").splitlines()
    assert text[0].endswith("2026-10-25 00:00 to 2026-10-26 00:00 (Europe/Kyiv)")
    assert text[1].split() == [
        "direction", "calls", "answered", "missed", "answered_ratio", "avg_wait_s", "avg_talk_s"
    ]  # fmt: skip
    assert text[2].split() == ["inbound", "8", "4", "4", "0.5", "4.5", "95.0"]
    assert text[3].split() == ["outbound", "1", "1", "0", "1.0", "8.0", "30.0"]


@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("categories", "code"),
        ("hourly", "weekday"),
        ("coverage", "manager"),
        ("callbacks", "jobs"),
    ],
)
def test_every_report_prints(
    database: Path, capsysbinary: pytest.CaptureFixture[bytes], name: str, header: str
) -> None:
    asyncio.run(_store(database, [as_event(call) for call in CALLS]))
    capsysbinary.readouterr()  # the call log's own lines while storing
    assert main(["report", name, *DAY, "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsysbinary.readouterr().out.decode("utf-8-sig"))))
    assert rows[0][0] == header
    if name == "hourly":
        assert rows[7][0] == "Sun" and rows[7][1 + 3] == "4"  # 03:30 happened twice
    if name == "coverage":
        assert rows[1:] == [["201", "3", "0", "0.0"], ["202", "2", "0", "0.0"]]
    if name == "callbacks":  # no callback jobs in this journal
        assert rows[1][:4] == ["0", "0", "0", "0"] and rows[1][-4:] == ["", "", "", ""]


def test_report_refusals_name_the_option(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "missed", "--from", "2026-02-30"]) == 2
    assert capsys.readouterr().err.startswith("voicebot report: --from: '2026-02-30'")
    assert main(["report", "missed", "--from", "2026-10-25", "--to", "2026-10-01"]) == 2
    assert "--to: must be after from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "everything"])


@pytest.mark.parametrize(
    "argv",
    [["calls"], ["categories", "list"], ["webhooks", "list"], ["callbacks", "list"]],
    ids=" ".join,
)
def test_an_unusable_database_is_one_line_and_exit_2(
    database: Path, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    database.mkdir(parents=True)  # a directory where the file should be
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [captured.err.strip()], captured.err
    assert captured.err.startswith("voicebot: ") and str(database) in captured.err
