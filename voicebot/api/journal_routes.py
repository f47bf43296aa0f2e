"""Mounts the call journal's HTTP side (calls, PBX events, categories, the
OpenAPI document) on the app `voicebot.api.server.build_app` made."""

from __future__ import annotations

from aiohttp import web

from voicebot.api import calls, categories, dashboard, openapi, reports
from voicebot.api.context import JOURNAL_API_KEY, JournalApi


def install(app: web.Application, api: JournalApi) -> None:
    app[JOURNAL_API_KEY] = api
    calls.register(app)
    categories.register(app)
    reports.register(app)
    openapi.register(app)
    dashboard.register(app)
