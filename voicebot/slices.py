"""Long CPU work on the event loop, cut into slices (issue 6 item 10).

The media clock shares the loop with the HTTP API. Turning 500 journal rows
into records, then into JSON-ready models, is 20-40 ms of pure Python; done
in one go it delays every call's next 20 ms packet by that much. Done in
slices of `SLICE` items with a yield to the loop between them, a due media
tick waits at most one slice (about 2 ms), and the request takes as long as
before. A thread would not help: the work holds the GIL, and the loop would
wait for it at every send.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import TypeVar

from pydantic import BaseModel

T = TypeVar("T")
R = TypeVar("R")

#: Items per slice: about 2 ms of row -> model work on a laptop core.
SLICE = 50


async def map_in_slices(
    convert: Callable[[T], R], items: Iterable[T], size: int = SLICE
) -> list[R]:
    """`[convert(item) for item in items]`, yielding to the loop every `size` items."""
    out: list[R] = []
    for n, item in enumerate(items, 1):
        out.append(convert(item))
        if n % size == 0:
            await asyncio.sleep(0)
    return out


async def json_in_slices(model: BaseModel, field: str, size: int = SLICE) -> str:
    """`model.model_dump_json(by_alias=True)`, byte for byte, with the list in
    `field` (a top-level field of models, no alias) dumped `size` items at a
    time with a yield to the loop between: a 1000-call report is 3-6 ms of
    JSON in one go, enough to make every call's next packet late."""
    items: list[BaseModel] = getattr(model, field)
    shell = model.model_copy(update={field: []}).model_dump_json(by_alias=True)
    empty = f'"{field}":[]'
    at = shell.index(empty) + len(empty) - 1  # the closing bracket
    pieces: list[str] = []
    for n, item in enumerate(items, 1):
        pieces.append(item.model_dump_json(by_alias=True))
        if n % size == 0:
            await asyncio.sleep(0)
    return shell[:at] + ",".join(pieces) + shell[at:]
