"""Call types as call-tracking users know them, each a small pure rule.

A rule looks only at stored facts of one call (`CallFacts`) and the windows
in `journal.*` settings (`TypeRules`); it never reads the clock or the
database. That is why "unique" is stored as a fact: `prev_inbound_gap_s`,
the seconds since the previous inbound call from the same client number
(None when there was none), kept up to date by the call log on every insert.
Changing `journal.unique_window_days` therefore re-types history at once.

Each rule has a twin SQL predicate in `SQL_PREDICATES` (over the `calls`
table aliased `c`) so lists and reports can filter and count by type without
loading rows; `tests/journal/test_call_types.py` checks that the twins agree.

Window edges (half-open, as "within N days" is read by people):
- repeated: a previous inbound call from the number started *less than*
  `unique_window_days` before this one; a gap of exactly the window is unique;
- target: answered and talk *at least* `target_min_talk_s`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

CallType = Literal["unique", "repeated", "target", "unique-target", "callback", "missed", "spam"]
CALL_TYPES: tuple[CallType, ...] = (
    "unique",
    "repeated",
    "target",
    "unique-target",
    "callback",
    "missed",
    "spam",
)


@dataclass(frozen=True, slots=True)
class TypeRules:
    unique_window_s: float
    target_min_talk_s: float

    @classmethod
    def from_settings(cls, unique_window_days: float, target_min_talk_s: float) -> TypeRules:
        return cls(
            unique_window_s=unique_window_days * 86400.0, target_min_talk_s=target_min_talk_s
        )


@dataclass(frozen=True, slots=True)
class CallFacts:
    direction: str | None
    status: str
    client_number: str | None
    talk_s: float | None
    prev_inbound_gap_s: float | None
    is_callback: bool
    spam: bool


def _inbound_from_known_number(call: CallFacts) -> bool:
    # An anonymous caller cannot be told apart from another one: neither
    # unique nor repeated.
    return call.direction == "inbound" and call.client_number is not None


def is_unique(call: CallFacts, rules: TypeRules) -> bool:
    return _inbound_from_known_number(call) and (
        call.prev_inbound_gap_s is None or call.prev_inbound_gap_s >= rules.unique_window_s
    )


def is_repeated(call: CallFacts, rules: TypeRules) -> bool:
    return (
        _inbound_from_known_number(call)
        and call.prev_inbound_gap_s is not None
        and call.prev_inbound_gap_s < rules.unique_window_s
    )


def is_target(call: CallFacts, rules: TypeRules) -> bool:
    return (
        call.status == "answered"
        and call.talk_s is not None
        and call.talk_s >= rules.target_min_talk_s
    )


def is_unique_target(call: CallFacts, rules: TypeRules) -> bool:
    return is_unique(call, rules) and is_target(call, rules)


def is_callback(call: CallFacts, rules: TypeRules) -> bool:
    return call.is_callback


def is_missed(call: CallFacts, rules: TypeRules) -> bool:
    # Busy and failed inbound calls lose the client just the same.
    return call.direction == "inbound" and call.status != "answered"


def is_spam(call: CallFacts, rules: TypeRules) -> bool:
    return call.spam


RULES: dict[CallType, Callable[[CallFacts, TypeRules], bool]] = {
    "unique": is_unique,
    "repeated": is_repeated,
    "target": is_target,
    "unique-target": is_unique_target,
    "callback": is_callback,
    "missed": is_missed,
    "spam": is_spam,
}


def call_types(call: CallFacts, rules: TypeRules) -> list[CallType]:
    return [name for name, rule in RULES.items() if rule(call, rules)]


_UNIQUE = (
    "(c.direction = 'inbound' AND c.client_number IS NOT NULL"
    " AND (c.prev_inbound_gap_s IS NULL OR c.prev_inbound_gap_s >= :unique_window_s))"
)
_TARGET = "(c.status = 'answered' AND c.talk_s IS NOT NULL AND c.talk_s >= :target_min_talk_s)"

# Named parameters `:unique_window_s` and `:target_min_talk_s` come from
# `sql_parameters(rules)`.
SQL_PREDICATES: dict[CallType, str] = {
    "unique": _UNIQUE,
    "repeated": (
        "(c.direction = 'inbound' AND c.client_number IS NOT NULL"
        " AND c.prev_inbound_gap_s IS NOT NULL AND c.prev_inbound_gap_s < :unique_window_s)"
    ),
    "target": _TARGET,
    "unique-target": f"({_UNIQUE} AND {_TARGET})",
    "callback": "(c.is_callback = 1)",
    "missed": "(c.direction = 'inbound' AND c.status != 'answered')",
    "spam": "(c.category_code IN (SELECT code FROM categories WHERE spam = 1))",
}


def sql_parameters(rules: TypeRules) -> dict[str, float]:
    return {
        "unique_window_s": rules.unique_window_s,
        "target_min_talk_s": rules.target_min_talk_s,
    }
