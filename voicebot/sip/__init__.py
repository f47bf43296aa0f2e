"""SIP user agent for voicebot: transport, transactions, dialogs, registration."""
