"""The call journal (aiosqlite, WAL, versioned migrations)."""

from voicebot.journal.store import CallOutcome, CallStart, Categorization, Journal

__all__ = ["CallOutcome", "CallStart", "Categorization", "Journal"]
