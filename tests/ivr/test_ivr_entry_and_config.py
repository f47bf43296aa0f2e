"""Value parsing, read-back spelling, configuration checks, and the module rules."""

import ast
from decimal import Decimal
from pathlib import Path

import pytest

import ivr
from ivr import MAX_VALUE_DIGITS, PROMPTS, Category, MenuConfig, categories_by_code
from ivr.entry import parse_value, spell, spell_value

CATS = {"1": Category("1", "sale", None)}


@pytest.mark.parametrize(
    ("keys", "value"),
    [
        ("0", Decimal("0")),
        ("1500", Decimal("1500")),
        ("1500*50", Decimal("1500.50")),
        ("1500*", Decimal("1500")),
        ("007", Decimal("7")),
        ("0*05", Decimal("0.05")),
        ("9" * MAX_VALUE_DIGITS, Decimal("9" * MAX_VALUE_DIGITS)),
        ("1" * 6 + "*" + "2" * 6, Decimal("111111.222222")),
    ],
)
def test_parse_value(keys, value):
    parsed = parse_value(keys)
    assert parsed == value
    assert str(parsed) == str(value)  # the scale as keyed: 1500.50 stays 1500.50


@pytest.mark.parametrize(
    "keys",
    [
        "",
        "*",
        "*5",
        "1**5",
        "1*5*",
        "1*2*3",
        "12#",
        "1A",
        "٣",
        "1 5",
        "9" * 13,
        "1" * 7 + "*" + "1" * 6,
    ],
)
def test_parse_value_rejects(keys):
    assert parse_value(keys) is None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("3", ("digit_3",)),
        ("42", ("digit_4", "digit_2")),
        ("0.5", ("digit_0", "point", "digit_5")),
        ("1234567890", tuple(f"digit_{n}" for n in "1234567890")),
    ],
)
def test_spell(text, said):
    assert spell(text) == said
    assert set(said) <= PROMPTS


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (Decimal("100.0"), ("digit_1", "digit_0", "digit_0")),
        (Decimal("1E+3"), ("digit_1", "digit_0", "digit_0", "digit_0")),
        (
            Decimal("1500.50"),
            ("digit_1", "digit_5", "digit_0", "digit_0", "point", "digit_5", "digit_0"),
        ),
        (Decimal("0.05"), ("digit_0", "point", "digit_0", "digit_5")),
        (Decimal("0"), ("digit_0",)),
        (Decimal("0.00"), ("digit_0",)),
    ],
)
def test_spell_value(value, said):
    assert spell_value(value) == said


def test_prompt_names_are_the_contract():
    assert len(PROMPTS) == 23
    assert {"greeting", "ask_category", "ask_value", "confirm", "saved", "not_saved"} <= PROMPTS


def test_config_defaults():
    config = MenuConfig(CATS)
    assert (config.ask_category, config.ask_value, config.confirm) == (True, True, True)
    assert config.terminator == "#"
    assert (config.first_digit_timeout_s, config.digit_timeout_s) == (8.0, 4.0)
    assert config.max_attempts == 3


def test_config_keeps_its_own_copy_of_the_categories():
    categories = dict(CATS)
    config = MenuConfig(categories)
    categories["2"] = Category("2", "late", None)
    assert list(config.categories) == ["1"]
    with pytest.raises(TypeError):
        config.categories["3"] = Category("3", "x", None)  # type: ignore[index]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ask_category": False, "ask_value": False},
        {"categories": {}},
        {"categories": {"1": Category("2", "x", None)}},
        {"terminator": "*"},
        {"terminator": "5"},
        {"terminator": "##"},
        {"first_digit_timeout_s": 0},
        {"digit_timeout_s": -1.0},
        {"max_attempts": 0},
    ],
)
def test_bad_configuration_is_refused_up_front(kwargs):
    arguments = {"categories": CATS, **kwargs}
    with pytest.raises(ValueError):
        MenuConfig(**arguments)


@pytest.mark.parametrize(
    ("code", "name", "value", "field"),
    [
        ("1a", "x", None, "code"),
        ("", "x", None, "code"),
        ("1234567", "x", None, "code"),
        ("١", "x", None, "code"),  # an Arabic-Indic digit is not a keypad key
        ("1", "", None, "name"),
        ("1", "  ", None, "name"),
        ("1", "x", Decimal("-1"), "value"),
        ("1", "x", Decimal("NaN"), "value"),
        ("1", "x", Decimal("Infinity"), "value"),
    ],
)
def test_a_bad_category_is_never_built(code, name, value, field):
    # One validation for every source of categories (settings, the database).
    with pytest.raises(ValueError, match=f"^{field}: "):
        Category(code, name, value)


def test_duplicate_codes_are_refused():
    with pytest.raises(ValueError, match="duplicate category code '1'"):
        categories_by_code([Category("1", "a"), Category("1", "b")])
    assert list(categories_by_code([Category("1", "a"), Category("2", "b")])) == ["1", "2"]


def test_no_categories_needed_when_not_asked():
    MenuConfig({}, ask_category=False)


def test_public_names():
    # the names the app imports from `ivr`, as documented
    documented = {
        "CancelTimer", "Category", "Digit", "HangUp", "Hangup", "Menu", "MenuConfig",
        "MenuResult", "Play", "PromptFinished", "Save", "Start", "StartTimer",
        "StopPlayback", "TimerFired",
    }  # fmt: skip
    assert documented <= set(ivr.__all__)
    assert set(ivr.__all__) <= set(dir(ivr))


FORBIDDEN = {"asyncio", "socket", "threading", "time", "datetime", "voicebot", "pyVoIP", "webhooks"}


@pytest.mark.parametrize(
    "path", sorted(Path(ivr.__file__).parent.glob("*.py")), ids=lambda p: p.name
)
def test_ivr_does_no_io_and_imports_no_app(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"
    assert "open(" not in path.read_text()
