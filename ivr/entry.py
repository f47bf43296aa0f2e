"""What a keyed entry means: categories, values, and how the bot says them back.

Pure functions over strings of keypad keys; the menu decides when to call them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

#: Longest value the keypad may enter, in digits (the decimal point not counted).
#: Twelve digits hold any realistic deal amount with cents; more is a stuck key.
MAX_VALUE_DIGITS = 12

# Digits, then optionally `*` (the decimal point) and more digits. A `*` first
# never reaches here: as the first key of an entry it means "start again".
_VALUE = re.compile(r"([0-9]+)(?:\*([0-9]*))?")


#: Longest category code, in keys: a code is keyed from memory.
MAX_CODE_DIGITS = 6


@dataclass(frozen=True, slots=True)
class Category:
    """A category the manager can key: `code` on the keypad, `name` for people,
    `value` the default value used when the value entry is empty (or not asked),
    `spam` whether calls filed under it are spam (the journal's call type).

    Its rules are checked here, once, for every source of categories (the
    settings file, the catalogue in the database): a category that breaks
    them is never built."""

    code: str
    name: str
    value: Decimal | None = None
    spam: bool = False

    def __post_init__(self) -> None:
        if not (
            isinstance(self.code, str)
            and 1 <= len(self.code) <= MAX_CODE_DIGITS
            and self.code.isascii()
            and self.code.isdigit()
        ):
            raise ValueError(
                f"code: {self.code!r} is not 1-{MAX_CODE_DIGITS} keypad digits;"
                ' expected e.g. "2" or "15"'
            )
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f'name: empty for category {self.code}; expected e.g. "sale"')
        if self.value is not None and not (
            isinstance(self.value, Decimal) and self.value.is_finite() and self.value >= 0
        ):
            raise ValueError(
                f"value: not a number >= 0 for category {self.code}; expected e.g. 100, or none"
            )


#: Categories by code, as the menu takes them.
Categories = Mapping[str, Category]


def categories_by_code(categories: Iterable[Category]) -> dict[str, Category]:
    """The menu's catalogue; a code may name one category only."""
    result: dict[str, Category] = {}
    for category in categories:
        if category.code in result:
            raise ValueError(f"duplicate category code {category.code!r}; codes must be unique")
        result[category.code] = category
    return result


def parse_value(keys: str) -> Decimal | None:
    """The value keyed as `keys` (`1500*50` is 1500.50), or None if it is not one.

    Leading zeros are fine; a second `*`, a `*` first, a non-digit or more than
    `MAX_VALUE_DIGITS` digits make it invalid. The empty entry is the caller's
    business (it means "the default value").
    """
    match = _VALUE.fullmatch(keys)
    if match is None:
        return None
    whole, fraction = match.group(1), match.group(2) or ""
    if len(whole) + len(fraction) > MAX_VALUE_DIGITS:
        return None
    return Decimal(f"{whole}.{fraction}") if fraction else Decimal(whole)


def spell(text: str) -> tuple[str, ...]:
    """Prompt names that say `text` key by key: `digit_N` per digit, `point` for '.'."""
    return tuple(
        "point" if char == "." else f"digit_{char}" for char in text if char in "0123456789."
    )


def spell_value(value: Decimal) -> tuple[str, ...]:
    """Prompt names that say `value`: its digits, `point` before any fraction.

    A whole number is said without a fraction even when it carries one
    (`100.0` from a configured default is "one zero zero"): "point zero" tells
    the listener nothing. A real fraction is said as stored, trailing zeros too.
    """
    if value == value.to_integral_value():
        value = value.to_integral_value()
    return spell(format(value, "f"))
