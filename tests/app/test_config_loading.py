"""One way to load settings for every subcommand (issue 6 item 12, issue 8):
one line per problem naming the setting both ways and the expected form,
exit status 2, never a traceback, never a secret quoted (issue 6 item 4),
and an API reachable from the network only behind a token (item 3)."""

from __future__ import annotations

import ast
import base64
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

import ivr
from voicebot.cli import build_parser, main
from voicebot.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[2]
SECRET_TEXT = "my-real-production-secret"
GOOD_SECRET = "whsec_" + base64.b64encode(b"voicebot-config-test-secret-0123").decode()
ENDPOINT = '[[webhooks.endpoints]]\nurl = "http://127.0.0.1:9/crm"\nsecret = "{secret}"\n'

# Every subcommand, with the arguments it needs to reach its settings.
COMMANDS = [
    ["run"],
    ["check"],
    ["simulate-call", "--timeout", "1"],
    ["webhooks", "list"],
    ["webhooks", "replay", "--failed"],
    ["webhooks", "enable", "http://127.0.0.1:9/crm"],
    ["webhooks", "test", "http://127.0.0.1:9/crm"],
    ["import-cdr", "Master.csv"],
    ["calls"],
    ["categories", "list"],
    ["categories", "add", "5", "x"],
    ["categories", "remove", "5"],
    ["callbacks", "list"],
    ["callbacks", "cancel", "1"],
    ["callbacks", "retry", "1"],
    ["report", "missed"],
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.upper().startswith("VOICEBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    async def started(*args: object) -> None:
        # A `run` that got past its settings would serve forever: fail instead.
        raise AssertionError("the bot started")

    import voicebot.app

    monkeypatch.setattr(voicebot.app, "serve", started)
    return tmp_path


def write_config(directory: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = directory / "voicebot.toml"
    path.write_text(text)
    monkeypatch.setenv("VOICEBOT_CONFIG", str(path))
    return path


def refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> list[str]:
    """Run the command in-process; it must exit 2 before doing anything."""
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2, argv
    out, err = capsys.readouterr()
    assert out == "", (argv, out)
    return err.splitlines()


def test_the_table_covers_every_subcommand() -> None:
    parser = build_parser()
    (commands,) = [a for a in parser._actions if a.dest == "command"]
    assert set(commands.choices) == {argv[0] for argv in COMMANDS}


def test_no_command_loads_settings_its_own_way() -> None:
    for module in sorted((REPO / "voicebot" / "cli").glob("*.py")):
        tree = ast.parse(module.read_text())
        calls = {
            node.func.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }
        assert "load_settings" not in calls, module
        assert "Settings" not in calls, module


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: " ".join(argv))
def test_every_subcommand_refuses_a_bad_setting_the_same_way(
    argv: list[str],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(clean_env, ENDPOINT.format(secret=SECRET_TEXT), monkeypatch)
    lines = refused(argv, capsys)
    assert len(lines) == 1, lines
    (line,) = lines
    assert "webhooks.endpoints.0.secret (VOICEBOT_WEBHOOKS__ENDPOINTS__0__SECRET)" in line
    assert "expected whsec_ + base64" in line
    assert SECRET_TEXT not in line and "input_value" not in line


@pytest.mark.parametrize(
    ("toml", "env", "secret"),
    [
        (ENDPOINT.format(secret=SECRET_TEXT), {}, SECRET_TEXT),
        (ENDPOINT.format(secret="whsec_not*base64!"), {}, "not*base64!"),
        # Valid base64, but 5 bytes: Standard Webhooks asks for 24 to 64.
        (ENDPOINT.format(secret="whsec_aGVsbG8="), {}, "aGVsbG8="),
        ("[sip]\npassword = 987654321\n[http]\napi_token = 123456789\n", {}, "987654321"),
        ("[http]\napi_token = 123456789\n", {}, "123456789"),
        # A misspelt key may hold the secret it was meant for.
        ("", {"VOICEBOT_SIP__PASWORD": SECRET_TEXT}, SECRET_TEXT),
        (
            "",
            {"VOICEBOT_WEBHOOKS__ENDPOINTS": f'[{{"url": "x", "secret": "{SECRET_TEXT}"}}]'},
            SECRET_TEXT,
        ),
        ("", {"VOICEBOT_WEBHOOKS__ENDPOINTS": f'[{{"url": "{SECRET_TEXT}"'}, SECRET_TEXT),
    ],
)
@pytest.mark.parametrize("argv", [["check"], ["run"], ["webhooks", "list"], ["simulate-call"]])
def test_secrets_are_never_echoed(
    toml: str,
    env: dict[str, str],
    secret: str,
    argv: list[str],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(clean_env, toml, monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    lines = refused(argv, capsys)
    assert lines
    assert not any(secret in line for line in lines), lines
    assert not any("input_value" in line or "Traceback" in line for line in lines), lines


def test_the_environment_sets_one_item_of_a_list_from_the_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file says where to deliver; the secret comes from a secret store.
    write_config(clean_env, ENDPOINT.format(secret="whsec_not*base64!"), monkeypatch)
    monkeypatch.setenv("VOICEBOT_WEBHOOKS__ENDPOINTS__0__SECRET", GOOD_SECRET)
    settings = load_settings()
    (endpoint,) = settings.webhooks.endpoints
    assert endpoint.url == "http://127.0.0.1:9/crm"
    assert endpoint.secrets() == [GOOD_SECRET]


def run_cli(
    tmp_path: Path, argv: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.upper().startswith("VOICEBOT_")}
    clean.update(env, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-m", "voicebot", *argv],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("toml", ["voicebot.toml: not valid TOML", "line 2, column 8"]),
        ("env-list", ["sip.allowed_peers (VOICEBOT_SIP__ALLOWED_PEERS): not valid JSON", "list"]),
        ("no-file", ["VOICEBOT_CONFIG=", "no such file"]),
    ],
)
def test_unparsable_input_is_one_line_not_a_traceback(
    tmp_path: Path, case: str, expected: list[str]
) -> None:
    env: dict[str, str] = {}
    if case == "toml":
        (tmp_path / "voicebot.toml").write_text("[sip]\nport = = 5060\n")
        env["VOICEBOT_CONFIG"] = str(tmp_path / "voicebot.toml")
    elif case == "env-list":
        env["VOICEBOT_SIP__ALLOWED_PEERS"] = "10.0.0.1"
    else:
        env["VOICEBOT_CONFIG"] = str(tmp_path / "missing.toml")
    done = run_cli(tmp_path, ["check"], env)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("voicebot check: ")
    for text in expected:
        assert text in lines[0], lines


# -- the API off loopback --------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "pbx.example.com", ""])
def test_an_api_off_loopback_needs_a_token(
    host: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VOICEBOT_HTTP__HOST", host)
    for argv in (["check"], ["run"]):
        (line,) = refused(argv, capsys)
        assert "http.api_token (VOICEBOT_HTTP__API_TOKEN): must be set" in line, line
    monkeypatch.setenv("VOICEBOT_HTTP__API_TOKEN", "")
    (line,) = refused(["check"], capsys)
    assert "http.api_token" in line
    monkeypatch.setenv("VOICEBOT_HTTP__API_TOKEN", "a-long-random-token")
    assert load_settings().http.host == host


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST"])
def test_loopback_needs_no_token(
    host: str, clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VOICEBOT_HTTP__HOST", host)
    assert load_settings().http.api_token is None


def test_run_refuses_to_start_an_open_api(tmp_path: Path) -> None:
    done = run_cli(
        tmp_path,
        ["run"],
        {
            "VOICEBOT_HTTP__HOST": "0.0.0.0",
            "VOICEBOT_HTTP__PORT": "0",
            "VOICEBOT_SIP__BIND_PORT": "0",
        },
    )
    assert done.returncode == 2
    assert (
        done.stderr.splitlines() == [done.stderr.splitlines()[0]]
        and "VOICEBOT_HTTP__API_TOKEN" in done.stderr
    )
    assert not (tmp_path / "data").exists()  # nothing was opened


# -- the menu's rules live in ivr ------------------------------------------


def test_settings_build_the_menu_from_ivr_categories(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        clean_env,
        '[ivr]\nmax_attempts = 5\n[[categories]]\ncode = "7"\nname = "spam"\nvalue = 0\n'
        "spam = true\n",
        monkeypatch,
    )
    settings = load_settings()
    config = settings.menu_config()
    assert isinstance(config, ivr.MenuConfig)
    assert config.max_attempts == 5
    assert dict(config.categories) == {"7": ivr.Category("7", "spam", value=Decimal(0), spam=True)}
    live = {"8": ivr.Category("8", "from the database")}
    assert dict(settings.menu_config(live).categories) == live
    assert Settings.model_fields["categories"].annotation == list[ivr.Category]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        (
            '[[categories]]\ncode = "1x"\nname = "a"\n',
            "categories.0.code (VOICEBOT_CATEGORIES__0__CODE)",
        ),
        (
            '[[categories]]\ncode = "1"\nname = ""\n',
            "categories.0.name (VOICEBOT_CATEGORIES__0__NAME)",
        ),
        ('[[categories]]\ncode = "1"\nname = "a"\nvalue = -1\n', "categories.0.value"),
        ('[[categories]]\ncode = "1"\nname = "a"\nvlaue = 1\n', "categories.0.vlaue"),
        ("categories = []\n", "ask_category needs at least one category"),
    ],
)
def test_a_bad_menu_is_a_configuration_error(
    toml: str,
    expected: str,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_config(clean_env, toml, monkeypatch)
    (line,) = refused(["check"], capsys)
    assert expected in line, line
