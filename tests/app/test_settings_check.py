"""`voicebot check` and the settings contract (DESIGN.md §4): env over TOML,
one line per problem naming the setting, secrets masked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from voicebot.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def run_check(
    tmp_path: Path, env: dict[str, str], toml: str | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOICEBOT_")}
    clean.update(env)
    if toml is not None:
        path = tmp_path / "voicebot.toml"
        path.write_text(toml)
        clean["VOICEBOT_CONFIG"] = str(path)
    return subprocess.run(
        [sys.executable, "-m", "voicebot", "check"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_defaults_are_valid_and_printed(tmp_path: Path) -> None:
    result = run_check(tmp_path, {})
    assert result.returncode == 0, result.stderr
    assert "[sip]" in result.stdout
    assert 'mode = "peer"' in result.stdout


def test_secrets_are_masked(tmp_path: Path) -> None:
    result = run_check(
        tmp_path,
        {
            "VOICEBOT_SIP__MODE": "register",
            "VOICEBOT_SIP__SERVER": "pbx.local",
            "VOICEBOT_SIP__USERNAME": "201",
            "VOICEBOT_SIP__PASSWORD": "hunter2-secret",
            "VOICEBOT_HTTP__API_TOKEN": "tok-very-secret",
        },
    )
    assert result.returncode == 0, result.stderr
    assert "hunter2-secret" not in result.stdout
    assert "tok-very-secret" not in result.stdout
    assert "**********" in result.stdout


def test_env_wins_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v.toml"
    path.write_text('[ivr]\nlanguage = "uk"\nmax_attempts = 5\n')
    monkeypatch.setenv("VOICEBOT_CONFIG", str(path))
    monkeypatch.setenv("VOICEBOT_IVR__LANGUAGE", "ru")
    settings = load_settings()
    assert settings.ivr.language == "ru"
    assert settings.ivr.max_attempts == 5


@pytest.mark.parametrize(
    ("env", "toml", "expected"),
    [
        ({"VOICEBOT_IVR__LANGUAGE": "de"}, None, "ivr.language"),
        (
            {"VOICEBOT_SIP__RTP_PORT_MIN": "30000", "VOICEBOT_SIP__RTP_PORT_MAX": "20000"},
            None,
            "rtp_port_min (30000) is above rtp_port_max (20000)",
        ),
        ({"VOICEBOT_SIP__MODE": "register"}, None, "mode 'register' needs server"),
        (
            {},
            '[[categories]]\ncode = "1"\nname = "a"\n[[categories]]\ncode = "1"\nname = "b"\n',
            "duplicate category code '1'",
        ),
        ({}, '[[categories]]\ncode = "1x"\nname = "a"\n', "categories.0.code"),
        ({"VOICEBOT_SIP__ALLOWED_PEERS": '["not-an-ip"]'}, None, "'not-an-ip' is not an IP"),
        ({}, "[sip]\nbogus = 1\n", "sip.bogus (VOICEBOT_SIP__BOGUS): unknown setting"),
        ({"VOICEBOT_CONFIG": "/nonexistent/voicebot.toml"}, None, "VOICEBOT_CONFIG"),
    ],
)
def test_problems_one_line_each(
    tmp_path: Path, env: dict[str, str], toml: str | None, expected: str
) -> None:
    result = run_check(tmp_path, env, toml)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("voicebot check:")]
    assert lines, result.stderr
    assert any(expected in line for line in lines), result.stderr


def test_two_problems_give_two_lines(tmp_path: Path) -> None:
    result = run_check(
        tmp_path, {"VOICEBOT_IVR__LANGUAGE": "de", "VOICEBOT_IVR__MAX_ATTEMPTS": "0"}
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("voicebot check:")]
    assert len(lines) == 2, result.stderr


def test_missing_prompt_file_is_named(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "greeting.wav").write_bytes(b"RIFF-not-really")
    result = run_check(tmp_path, {"VOICEBOT_IVR__PROMPTS_DIR": str(prompts)})
    assert result.returncode == 1
    assert "greeting.wav" in result.stderr
