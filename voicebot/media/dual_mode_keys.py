"""One digit per press when a phone sends a key both as RFC 4733 and as tones.

Phones in "dual" DTMF mode send each press twice: as telephone-events and as
tones in the audio. The RFC 4733 copy usually arrives first (its first
packet leaves at key-down; tones need 35 ms to be recognised), but jitter or
a late event can reverse that. So presses are paired, not just debounced: a
key from one source is dropped if the other source reported the same key
within `window_s` and that report is not already paired. Two real presses of
the same key each bring their own pair, so fast repeats are never merged.
"""

from __future__ import annotations

from collections import deque

#: RFC 4733 and in-band copies of one press arrive this close together.
PAIR_WINDOW_S = 0.3


class DualModeKeys:
    """Decides whether a key from `source` is a new press (True) or the other copy (False)."""

    def __init__(self, window_s: float = PAIR_WINDOW_S) -> None:
        self.window_s = window_s
        self._unpaired: deque[tuple[float, str, str]] = deque()  # (time, source, key)
        self.merged = 0

    def accept(self, source: str, key: str, now: float) -> bool:
        unpaired = self._unpaired
        while unpaired and now - unpaired[0][0] > self.window_s:
            unpaired.popleft()
        for i, (_, other_source, other_key) in enumerate(unpaired):
            if other_source != source and other_key == key:
                del unpaired[i]
                self.merged += 1
                return False
        unpaired.append((now, source, key))
        return True
