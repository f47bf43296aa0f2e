import asyncio
import itertools
import time
from collections.abc import Callable

import pytest

from voicebot.media.clock import ANALYSE, MID_ANALYSE, MID_RECEIVE, RECEIVE, SEND, MediaClock


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


class Busy:
    """A phase that takes `seconds` of the loop and notes when it began."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.began: dict[int, float] = {}

    def on_tick(self, tick_no: int) -> None:
        now = time.monotonic()
        self.began.setdefault(tick_no, now)
        while time.monotonic() - now < self.seconds:
            pass


@pytest.mark.alone
async def test_the_mid_tick_read_is_half_way_between_two_reads() -> None:
    """The reads come after the sends: with 40 ms of sends in a 100 ms tick, a
    tick reads at +40 and the next at +140, so the mid-tick read comes at +90
    (half-way between the ticks' starts, +50, it left a datagram 90 ms in the
    kernel on one side and 10 on the other)."""
    clock = MediaClock(interval=0.1)
    sends, reads, mid_reads = Busy(0.04), Busy(), Busy()
    clock.subscribe(sends, SEND)
    clock.subscribe(reads, RECEIVE)
    clock.subscribe(mid_reads, MID_RECEIVE)
    await until(lambda: len(reads.began) >= 5, timeout=5)
    await clock.stop()
    ticks = sorted(reads.began)[:4]
    for tick in ticks:
        before = mid_reads.began[tick] - reads.began[tick]
        after = reads.began[tick + 1] - mid_reads.began[tick]
        assert abs(before - after) < 0.025, (tick, before, after)


@pytest.mark.alone
async def test_a_mid_tick_never_makes_the_next_ticks_sends_wait() -> None:
    """60 ms of sends and a 15 ms mid-tick in a 100 ms tick: half-way between the
    reads (+110) is past the next tick, so the mid-tick comes as late as it can
    and still end before it (+84 to +99), and every tick sends on time."""
    clock = MediaClock(interval=0.1)
    sends, mid_analysis = Busy(0.06), Busy(0.015)
    clock.subscribe(sends, SEND)
    clock.subscribe(Busy(), RECEIVE)
    clock.subscribe(mid_analysis, MID_ANALYSE)
    await until(lambda: len(sends.began) >= 7, timeout=5)
    await clock.stop()
    ticks = sorted(sends.began)
    first = ticks[2]  # the first mid-tick teaches the clock what one costs
    for tick in ticks[3:7]:
        late = sends.began[tick] - sends.began[first] - (tick - first) * 0.1
        assert late < 0.005, (tick, late)
        assert tick - 1 in mid_analysis.began  # and the mid-tick before it ran
