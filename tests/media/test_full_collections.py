"""Full garbage collections wait for a moment without media (voicebot/media/collector.py).

A full pass over 500 calls' objects stalled the media clock 21-44 ms once
every 10 s of the full-duplex bench; the bot defers full passes while calls
run and makes one when the media clock stops for want of calls.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tests.media.test_media_clock import Recorder, until
from voicebot.media.clock import MediaClock
from voicebot.media.collector import FULL_EVERY, FullCollections


@pytest.fixture
def full_passes() -> Iterator[list[int]]:
    """Generations of the collections that run while the test does (real gc)."""
    seen: list[int] = []

    def on_collection(phase: str, info: dict[str, int]) -> None:
        if phase == "stop":
            seen.append(info["generation"])

    gc.callbacks.append(on_collection)
    yield seen
    gc.callbacks.remove(on_collection)


def test_defer_raises_only_the_full_threshold_and_restore_puts_it_back() -> None:
    before = gc.get_threshold()
    collections = FullCollections()
    collections.defer()
    try:
        assert gc.get_threshold() == (before[0], before[1], FULL_EVERY)
        collections.defer()  # twice: still restores what was there first
    finally:
        collections.restore()
    assert gc.get_threshold() == before


def test_when_idle_runs_a_full_pass_at_most_once_per_interval(full_passes: list[int]) -> None:
    now = [100.0]
    collections = FullCollections(min_interval_s=10, now=lambda: now[0])
    collections.when_idle()
    assert 2 in full_passes
    full_passes.clear()
    now[0] += 9.9
    collections.when_idle()  # media stopped again right away: not yet
    assert 2 not in full_passes
    now[0] += 0.2
    collections.when_idle()
    assert 2 in full_passes
    assert collections.idle_collections == 2


async def test_the_clock_calls_on_idle_when_its_last_subscriber_leaves() -> None:
    idle: list[str] = []
    clock = MediaClock(interval=0.005, on_idle=lambda: idle.append("idle"))
    recorder = Recorder()
    clock.subscribe(recorder)
    await until(lambda: len(recorder.ticks) >= 3)
    assert idle == []  # media running: never
    clock.unsubscribe(recorder)
    await until(lambda: not clock.running)
    assert idle == ["idle"]
    clock.subscribe(recorder)  # a new call: the clock restarts, idles again after
    await until(lambda: len(recorder.ticks) >= 6)
    clock.unsubscribe(recorder)
    await until(lambda: not clock.running)
    assert idle == ["idle", "idle"]


async def test_stopping_the_clock_is_not_idle_and_a_failing_hook_is_one_log_line() -> None:
    calls: list[str] = []

    def broken() -> None:
        calls.append("called")
        raise RuntimeError("boom")

    clock = MediaClock(interval=0.005, on_idle=broken)
    recorder = Recorder()
    clock.subscribe(recorder)
    await until(lambda: len(recorder.ticks) >= 2)
    await clock.stop()  # shutdown, calls still subscribed: not a quiet moment
    assert calls == []
    clock.subscribe(recorder)
    await until(lambda: len(recorder.ticks) >= 4)
    clock.unsubscribe(recorder)
    await until(lambda: not clock.running)
    assert calls == ["called"]  # raised, logged; the clock is still usable
    clock.subscribe(recorder)
    await until(lambda: len(recorder.ticks) >= 6)
    await clock.stop()
