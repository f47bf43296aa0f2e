import asyncio
import itertools
import time
from collections.abc import Callable

from voicebot.media.clock import ANALYSE, RECEIVE, SEND, MediaClock


class Recorder:
    def __init__(self) -> None:
        self.ticks: list[int] = []

    def on_tick(self, tick_no: int) -> None:
        self.ticks.append(tick_no)


async def until(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll `condition` on the loop until it holds; fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition never held"
        await asyncio.sleep(0.001)


async def test_one_task_drives_all_subscribers() -> None:
    clock = MediaClock(interval=0.005)
    a, b = Recorder(), Recorder()
    clock.subscribe(a)
    clock.subscribe(b)
    await until(lambda: len(a.ticks) >= 5)
    clock.unsubscribe(b)
    seen_by_b = len(b.ticks)
    await until(lambda: len(a.ticks) >= 10)
    await clock.stop()
    assert a.ticks == sorted(set(a.ticks))
    assert b.ticks == a.ticks[: len(b.ticks)]
    assert len(b.ticks) == seen_by_b
    assert not clock.running


async def test_stops_when_idle_and_restarts_lazily() -> None:
    clock = MediaClock(interval=0.005)
    r = Recorder()
    clock.subscribe(r)
    await until(lambda: bool(r.ticks))
    clock.unsubscribe(r)
    await until(lambda: not clock.running)
    clock.subscribe(r)
    assert clock.running
    await clock.stop()


async def test_stalled_loop_skips_ahead_instead_of_bursting() -> None:
    clock = MediaClock(interval=0.005, max_lag_ticks=3)
    r = Recorder()
    clock.subscribe(r)
    await until(lambda: bool(r.ticks))
    time.sleep(0.2)  # the stimulus: block the loop for ~40 ticks
    before = len(r.ticks)
    await until(lambda: len(r.ticks) >= before + 3)
    await clock.stop()
    assert clock.skipped_ticks > 0
    assert any(b - a > 1 for a, b in itertools.pairwise(r.ticks))


async def test_failing_tickable_is_dropped_others_continue() -> None:
    clock = MediaClock(interval=0.005)

    class Broken:
        def on_tick(self, tick_no: int) -> None:
            raise RuntimeError("bug")

    good, broken = Recorder(), Broken()
    clock.subscribe(broken)
    clock.subscribe(good)
    await until(lambda: len(good.ticks) >= 3)
    clock.unsubscribe(good)
    # broken was dropped, so no subscriber keeps the clock alive
    await until(lambda: not clock.running)
    await clock.stop()


async def test_phases_run_in_order_whatever_the_subscription_order() -> None:
    """Every send of a tick comes before its receives and its analysis, though the
    analyser subscribed first (the in-band receiver does, with the first call)."""
    clock = MediaClock(interval=0.005)
    order: list[tuple[int, str]] = []

    class Named:
        def __init__(self, name: str) -> None:
            self.name = name

        def on_tick(self, tick_no: int) -> None:
            order.append((tick_no, self.name))

    clock.subscribe(Named("analyse"), ANALYSE)
    clock.subscribe(Named("receive"), RECEIVE)
    clock.subscribe(Named("send-1"))
    clock.subscribe(Named("send-2"), SEND)
    await until(lambda: len(order) >= 12)
    await clock.stop()
    ticks = sorted({tick for tick, _ in order})
    for tick in ticks[:3]:
        assert [name for t, name in order if t == tick] == [
            "send-1",
            "send-2",
            "receive",
            "analyse",
        ]


async def test_what_became_ready_during_the_sends_runs_before_the_receives() -> None:
    """A commit's completion (a thread's call_soon_threadsafe) that lands while
    the calls send runs before the tick's receive and analysis, not after the
    whole tick: the clock lets the loop turn between phases."""
    clock = MediaClock(interval=0.005)
    order: list[tuple[int, str]] = []
    loop = asyncio.get_running_loop()

    class Sender:
        def on_tick(self, tick_no: int) -> None:
            order.append((tick_no, "send"))
            loop.call_soon_threadsafe(order.append, (tick_no, "completion"))

    class Phase:
        def __init__(self, name: str) -> None:
            self.name = name

        def on_tick(self, tick_no: int) -> None:
            order.append((tick_no, self.name))

    clock.subscribe(Sender())
    clock.subscribe(Phase("receive"), RECEIVE)
    clock.subscribe(Phase("analyse"), ANALYSE)
    await until(lambda: len(order) >= 12)
    await clock.stop()
    for tick in sorted({tick for tick, _ in order})[:3]:
        assert [name for t, name in order if t == tick] == [
            "send",
            "completion",
            "receive",
            "analyse",
        ]
