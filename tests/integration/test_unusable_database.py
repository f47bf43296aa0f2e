"""`voicebot run` on a database it cannot use exits at once, non-zero, with one
line naming the file and the problem: no traceback, no process left hanging
(a half-opened SQLite connection's thread used to keep it alive, deaf to
SIGTERM)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.bot_process import REPO
from tests.ports import rtp_window

NOBODY = 65534


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory another user can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="voicebot-db-"))
    path.chmod(0o755)
    yield path
    for child in path.rglob("*"):
        child.chmod(0o755 if child.is_dir() else 0o644)
    shutil.rmtree(path)


def run_bot(database: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The bot as an unprivileged user: root writes any file whatever its mode."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    # A free RTP window: with the default range partly held by another process
    # the bot rightly warns first, and this test counts lines.
    rtp_min, rtp_max = rtp_window(calls=2)
    env.update(
        VOICEBOT_SIP__RTP_PORT_MIN=str(rtp_min),
        VOICEBOT_SIP__RTP_PORT_MAX=str(rtp_max),
        PYTHONPATH=str(REPO),
        VOICEBOT_STORAGE__DATABASE=str(database),
        VOICEBOT_SIP__BIND_PORT="0",
        VOICEBOT_HTTP__PORT="0",
        VOICEBOT_IVR__LANGUAGE="en",
    )
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv (util-linux) is missing")
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "voicebot", "run"],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,  # a hang fails the test instead of blocking the suite
    )


def make_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE anything (x)")
    conn.close()


def read_only_file(root: Path) -> tuple[Path, str]:
    database = root / "voicebot.db"
    make_database(database)
    database.chmod(0o444)
    return database, "read-only"


def unwritable_directory(root: Path) -> tuple[Path, str]:
    directory = root / "data"
    directory.mkdir()
    directory.chmod(0o555)
    return directory / "voicebot.db", "not writable"


def under_a_regular_file(root: Path) -> tuple[Path, str]:
    (root / "data").write_text("not a directory")
    return root / "data" / "voicebot.db", "is a regular file"


@pytest.mark.parametrize("case", [read_only_file, unwritable_directory, under_a_regular_file])
def test_unusable_database_is_one_line_and_a_non_zero_exit(shared_dir: Path, case) -> None:
    database, problem = case(shared_dir)
    done = run_bot(database, shared_dir)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 1, lines
    assert len(lines) == 1, lines
    (line,) = lines
    assert "Traceback" not in line
    assert str(database) in line and problem in line, line
