"""The stock comparisons drive voicebot's RTP side with the media tests' fixtures."""

from tests.media.conftest import clock, pool

__all__ = ["clock", "pool"]
