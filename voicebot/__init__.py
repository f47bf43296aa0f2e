"""voicebot: a SIP bot for post-call categorization and missed-call callback."""

__version__ = "0.1.0"
