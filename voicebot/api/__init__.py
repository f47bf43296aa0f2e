"""HTTP API (aiohttp): health, journal, and later reports and the dashboard."""
