"""stop() ends the scheduler even when its wake-up event fires as it is cancelled.

On Python 3.11 `asyncio.wait_for` swallows a cancellation that arrives in
the same loop step as the awaited event, so the scheduler's loop went on and
`stop()` waited for ever: the whole suite hung in
test_restart_mid_attempt_dials_no_one_twice once.
"""

from __future__ import annotations

import asyncio

from tests.callbacks.callbacks_testkit import QueueFactory, ScriptedDialler
from voicebot.callbacks.scheduler import CallbackScheduler


async def test_stop_right_after_a_wake_up_ends_the_loop(make_queue: QueueFactory) -> None:
    queue = await make_queue(first_delay_s=0)
    for _ in range(20):
        scheduler = CallbackScheduler(queue, ScriptedDialler())
        await scheduler.start()
        await asyncio.sleep(0.02)  # the loop is waiting for a change
        scheduler.wake()
        await asyncio.sleep(0)  # the wake-up is delivered: cancel lands with it
        stopping = asyncio.create_task(scheduler.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert done, "stop() did not end the scheduler's loop"
