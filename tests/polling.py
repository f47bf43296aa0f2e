"""Waiting in tests: the one place a test polls a condition with a deadline.

A test that waits for something the code does on its own (a packet arriving,
a row committed, a job settling) polls for it here instead of sleeping a
fixed time first: it goes on as soon as the thing happened, and a thing that
never happens fails after `timeout` seconds, saying what was awaited.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable


async def until(
    condition: Callable[[], bool | Awaitable[bool]],
    timeout: float = 5.0,
    *,
    what: str | Callable[[], object] = "the condition",
    every: float = 0.01,
) -> None:
    """Return once `condition()` (plain or async) holds, checking every `every`
    seconds; after `timeout` seconds an AssertionError shows `what` (a callable
    `what` is asked then, so it can show the state the test got instead)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if loop.time() > deadline:
            shown = what() if callable(what) else what
            raise AssertionError(f"not reached within {timeout} s: {shown}")
        await asyncio.sleep(every)
