"""Prompt playback: a queue of pre-encoded 20 ms payloads, one per clock tick."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

OnFinished = Callable[[], None]


class FrameSource(Protocol):
    """What an `RtpSession` sends each tick: a payload and whether it starts a talkspurt."""

    def next_frame(self) -> tuple[bytes, bool]: ...


class PromptPlayer:
    """Hands the session one payload per tick: prompt audio, or silence when idle.

    `play()` replaces whatever is playing (the ivr `Play` contract);
    `enqueue()` appends. `on_finished` of a segment runs via
    `loop.call_soon` once its last frame has been handed out, never
    re-entrantly from `next_frame()`. `stop()` (barge-in) and `play()`
    drop the queue *and* cancel an `on_finished` already scheduled but not
    yet run, so the menu never hears "finished" for a prompt it replaced.
    """

    def __init__(self, silence: bytes, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._silence = silence
        self._loop = loop
        self._segments: deque[tuple[Sequence[bytes], OnFinished | None]] = deque()
        self._index = 0
        self._generation = 0  # bumped by stop(): finished-callbacks from before are void
        self._talking = False

    @property
    def playing(self) -> bool:
        return bool(self._segments)

    def play(self, frames: Sequence[bytes], on_finished: OnFinished | None = None) -> None:
        self.stop()
        self.enqueue(frames, on_finished)

    def enqueue(self, frames: Sequence[bytes], on_finished: OnFinished | None = None) -> None:
        self._segments.append((frames, on_finished))
        self._drop_empty()

    def stop(self) -> None:
        self._segments.clear()
        self._index = 0
        self._generation += 1

    def next_frame(self) -> tuple[bytes, bool]:
        """The next payload and whether it starts a talkspurt (RTP marker, RFC 3551 §4.1)."""
        if not self._segments:
            self._talking = False
            return self._silence, False
        frames, _ = self._segments[0]
        frame = frames[self._index]
        self._index += 1
        if len(frame) < len(self._silence):
            frame = frame + self._silence[len(frame) :]  # a prompt's short last frame
        if self._index >= len(frames):
            self._finish_segment()
            self._drop_empty()
        start = not self._talking
        self._talking = True
        return frame, start

    def _finish_segment(self) -> None:
        _, on_finished = self._segments.popleft()
        self._index = 0
        if on_finished is not None:
            loop = self._loop or asyncio.get_running_loop()
            loop.call_soon(self._run_finished, self._generation, on_finished)

    def _drop_empty(self) -> None:
        while self._segments and self._index == 0 and not self._segments[0][0]:
            self._finish_segment()

    def _run_finished(self, generation: int, on_finished: OnFinished) -> None:
        if generation == self._generation:
            on_finished()
