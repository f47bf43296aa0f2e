"""WHERE clauses the call log, its reports and the callback queue share.

A period is half-open, [since, until), and either end may be open (None);
times are Unix seconds as stored. Values go in as named parameters, never
into the SQL text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def between(
    column: str,
    since: float | None,
    until: float | None,
    names: tuple[str, str] = ("since", "until"),
) -> tuple[list[str], dict[str, Any]]:
    """`column` in [since, until): the clauses and their parameters."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    low, high = names
    if since is not None:
        clauses.append(f"{column} >= :{low}")
        params[low] = since
    if until is not None:
        clauses.append(f"{column} < :{high}")
        params[high] = until
    return clauses, params


def seconds(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None
