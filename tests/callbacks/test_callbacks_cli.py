"""`voicebot callbacks list|cancel|retry` on a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.callbacks.callbacks_testkit import T0
from voicebot.cli import main
from voicebot.cli.callbacks import open_queue
from voicebot.settings import load_settings


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "voicebot.db"
    monkeypatch.setenv("VOICEBOT_STORAGE__DATABASE", str(path))
    monkeypatch.setenv("VOICEBOT_CALLBACKS__DEFAULT_REGION", "UA")
    monkeypatch.delenv("VOICEBOT_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return path


def seed() -> tuple[int, int]:
    async def work() -> tuple[int, int]:
        queue = await open_queue(load_settings())
        try:
            one = await queue.missed_call("0441234567", missed_at=T0, source="pbx")
            two = await queue.missed_call("anonymous", missed_at=T0, source="pbx")
            return one.job.id, two.job.id
        finally:
            await queue.close()

    return asyncio.run(work())


def test_list_cancel_retry(database: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queued, skipped = seed()
    capsys.readouterr()
    assert main(["callbacks", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        [str(skipped), "skipped", "anonymous"],
        [str(queued), "queued", "+380441234567"],
    ]
    assert main(["callbacks", "list", "--state", "queued", "--number", "044 123 45 67"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 1
    assert main(["callbacks", "cancel", str(queued)]) == 0
    assert "\tcancelled\t" in capsys.readouterr().out
    assert main(["callbacks", "cancel", str(queued)]) == 1
    assert "already cancelled" in capsys.readouterr().err
    assert main(["callbacks", "retry", str(queued)]) == 0
    assert "\tqueued\t" in capsys.readouterr().out
    assert main(["callbacks", "retry", str(skipped)]) == 1
    assert "may not be dialled" in capsys.readouterr().err
    assert main(["callbacks", "cancel", "999"]) == 1
    assert "no callback 999" in capsys.readouterr().err
