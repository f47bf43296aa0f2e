"""The dashboard at `/`: one server-rendered page a head of sales opens in
the morning. No script and no build step: HTML from a Jinja2 template with
autoescaping, charts as inline SVG (voicebot/api/charts.py), and every
number taken from the same report functions the /api/v1/reports endpoints
serve, so the page and the API cannot disagree.

Login is the API token, typed once: the server answers with a session cookie
(HttpOnly, SameSite=Strict, 12 h) that carries no secret, only its issue
time and an HMAC of it keyed by the token, so changing the token signs
everyone out. Without `http.api_token` (loopback only) there is no login.

"Call back now" is a form POST to `/callbacks` that queues a callback job
(voicebot/callbacks/queue.py). SameSite=Strict alone does not make a POST
safe (a sibling subdomain is "same site"; without a token there is no cookie
at all), so every form carries a CSRF token, an HMAC of the session cookie
keyed by the API token (or by a per-process secret when there is no token),
and a POST whose Origin is not this server is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import datetime, timedelta
from importlib.resources import files
from typing import Any

import jinja2
from aiohttp import web

from voicebot.api import charts
from voicebot.api.callbacks import CALLBACKS_KEY, CallbacksApi
from voicebot.api.context import JournalApi, journal_api
from voicebot.api.dashboard_text import LANGUAGES, TEXT, Language
from voicebot.api.period import local_midnight
from voicebot.api.reports import (
    CallbackReportOut,
    CategoryReportOut,
    CoverageReportOut,
    HourlyReportOut,
    PeriodOut,
    SummaryReportOut,
    local_text,
    missed_report,
    report_of,
)
from voicebot.api.request_gate import mark_heavy
from voicebot.callbacks.queue import QueueError
from voicebot.journal.reports import ReportScope
from voicebot.logs import get_logger
from webhooks.outbox import count_by_status, disabled_endpoints

SESSION_COOKIE = "voicebot_session"
LANGUAGE_COOKIE = "voicebot_lang"
SESSION_S = 12 * 3600
#: Keys the CSRF token when there is no API token (loopback, no login).
_PROCESS_SECRET = secrets.token_hex(32)

_templates = jinja2.Environment(
    loader=jinja2.FunctionLoader(
        lambda name: files("voicebot.api").joinpath("templates", name).read_text("utf-8")
    ),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def _signature(token: str, issued: int) -> str:
    return hmac.new(
        token.encode(), f"voicebot-dashboard:{issued}".encode(), hashlib.sha256
    ).hexdigest()


def session_value(token: str, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    return f"{issued}.{_signature(token, issued)}"


def session_valid(token: str, value: str | None, now: float | None = None) -> bool:
    if not value or "." not in value:
        return False
    issued_text, _, signature = value.partition(".")
    if not issued_text.isdigit() or len(issued_text) > 12:
        return False
    issued = int(issued_text)
    moment = now if now is not None else time.time()
    if not (issued - 60 <= moment <= issued + SESSION_S):
        return False
    return hmac.compare_digest(signature, _signature(token, issued))


def csrf_token(api: JournalApi, request: web.Request) -> str:
    """The token every dashboard form carries: tied to this session cookie."""
    key = api.api_token or _PROCESS_SECRET
    session = request.cookies.get(SESSION_COOKIE, "")
    return hmac.new(key.encode(), f"voicebot-csrf:{session}".encode(), hashlib.sha256).hexdigest()


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        # Browsers send Origin on every cross-site POST; its absence is a
        # same-origin navigation or a non-browser client (who has no cookie to abuse).
        return origin is None
    return origin == f"{request.scheme}://{request.host}"


def _callbacks(request: web.Request) -> CallbacksApi | None:
    return request.app.get(CALLBACKS_KEY)


def _language(request: web.Request, api: JournalApi) -> Language:
    for candidate in (request.query.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if candidate in LANGUAGES:
            return candidate
    return api.language if api.language in LANGUAGES else "en"


def _with_language(response: web.StreamResponse, request: web.Request, lang: Language) -> None:
    if request.query.get("lang") == lang:
        response.set_cookie(
            LANGUAGE_COOKIE, lang, max_age=365 * 86400, httponly=True, samesite="Strict"
        )


def _signed_in(request: web.Request, api: JournalApi) -> bool:
    return api.api_token is None or session_valid(
        api.api_token, request.cookies.get(SESSION_COOKIE)
    )


def _page(template: str, **context: Any) -> web.Response:
    html = _templates.get_template(template).render(**context)
    return web.Response(
        text=html,
        content_type="text/html",
        headers={
            # Nothing on the page is script or remote: forbid both.
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline';"
            " img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def login_form(request: web.Request) -> web.Response:
    api = journal_api(request)
    lang = _language(request, api)
    response = _page("login.html", t=TEXT[lang], lang=lang, languages=LANGUAGES, error=False)
    _with_language(response, request, lang)
    return response


async def login(request: web.Request) -> web.StreamResponse:
    api = journal_api(request)
    lang = _language(request, api)
    form = await request.post()
    given = form.get("token")
    token = api.api_token
    if token is None:
        raise web.HTTPSeeOther("/")
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
        get_logger().info("dashboard.login_refused", remote=request.remote)
        response = _page("login.html", t=TEXT[lang], lang=lang, languages=LANGUAGES, error=True)
        response.set_status(401)
        return response
    response = web.HTTPSeeOther("/")
    response.set_cookie(
        SESSION_COOKIE,
        session_value(token),
        max_age=SESSION_S,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    get_logger().info("dashboard.login", remote=request.remote)
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


def _scope(api: JournalApi, since: datetime, until: datetime) -> tuple[ReportScope, PeriodOut]:
    scope = ReportScope(since, until, api.zone, api.call_log.rules)
    period = PeriodOut(from_=since.isoformat(), to=until.isoformat(), timezone=api.zone.key)
    return scope, period


async def dashboard(request: web.Request) -> web.StreamResponse:
    api = journal_api(request)
    if not _signed_in(request, api):
        raise web.HTTPSeeOther("/login")
    lang = _language(request, api)
    t = TEXT[lang]
    today = api.clock.now().astimezone(api.zone).date()
    day_start = local_midnight(today, api.zone)
    tomorrow = local_midnight(today + timedelta(days=1), api.zone)
    week_start = local_midnight(today - timedelta(days=today.weekday()), api.zone)
    day, day_period = _scope(api, day_start, tomorrow)
    week, week_period = _scope(api, week_start, tomorrow)

    missed_today = await missed_report(api.call_log, day, day_period)
    missed_week = await missed_report(api.call_log, week, week_period)
    categories = await report_of(CategoryReportOut, api.call_log, week, week_period)
    hourly = await report_of(HourlyReportOut, api.call_log, week, week_period)
    summary = await report_of(SummaryReportOut, api.call_log, week, week_period)
    coverage = await report_of(CoverageReportOut, api.call_log, week, week_period)
    callbacks_api = _callbacks(request)
    callbacks_on = callbacks_api is not None and callbacks_api.enabled
    callback_week = await report_of(CallbackReportOut, api.call_log, week, week_period)
    conn = api.call_log.reader
    deliveries = await count_by_status(conn)
    disabled = await disabled_endpoints(conn)
    health = api.health() if api.health is not None else {}
    weekdays = t["weekdays"].split()

    unprocessed = [c for c in missed_week.calls if c.unprocessed]
    response = _page(
        "dashboard.html",
        t=t,
        lang=lang,
        languages=LANGUAGES,
        signed=api.api_token is not None,
        today=today.isoformat(),
        week_from=week_start.date().isoformat(),
        missed_today=missed_today,
        missed_week=missed_week,
        unprocessed=[
            {
                "when": local_text(
                    datetime.fromisoformat(c.started_at.replace("Z", "+00:00")).timestamp(),
                    api.zone,
                )[:16],
                "client": c.client_number,
                "manager": c.manager,
                "wait": "" if c.wait_s is None else f"{c.wait_s:.0f}",
            }
            for c in unprocessed[:50]
        ],
        categories=categories,
        category_chart=charts.bars(
            [(f"{r.code} {r.name}", r.value_sum) for r in categories.totals], t["categories"]
        ),
        calls_chart=charts.bars(
            [(f"{r.code} {r.name}", float(r.calls)) for r in categories.totals], t["calls"]
        ),
        heat=charts.heat_map(hourly.calls, weekdays, t["heat"]),
        summary=summary.directions,
        rings={
            row.direction: charts.ratio_ring(row.answered_ratio, t[row.direction])
            for row in summary.directions
        },
        coverage=coverage.managers,
        coverage_chart=charts.bars(
            [(r.manager, round(r.coverage * 100, 1)) for r in coverage.managers],
            t["coverage"],
            unit="%",
        ),
        deliveries=deliveries,
        disabled=disabled,
        sip=health.get("sip", {}),
        active_calls=health.get("active_calls", 0),
        callbacks_available=callbacks_on,
        callback_week=callback_week,
        csrf=csrf_token(api, request),
        queued=request.query.get("queued", ""),
        refused=request.query.get("refused", ""),
    )
    _with_language(response, request, lang)
    return response


async def call_back_now(request: web.Request) -> web.StreamResponse:
    """The "call back now" button: a callback job for the number, at once."""
    api = journal_api(request)
    log = get_logger().bind(remote=request.remote)
    if not _signed_in(request, api):
        raise web.HTTPSeeOther("/login")
    form = await request.post()
    given = form.get("csrf")
    if (
        not isinstance(given, str)
        or not hmac.compare_digest(given.encode(), csrf_token(api, request).encode())
        or not _same_origin(request)
    ):
        log.info("dashboard.callback_refused", reason="csrf", origin=request.headers.get("Origin"))
        raise web.HTTPForbidden(text="forbidden: stale or foreign form; reload the dashboard")
    callbacks_api = _callbacks(request)
    number = form.get("number")
    if callbacks_api is None or not callbacks_api.enabled:
        log.info("dashboard.callback_refused", reason="callbacks_disabled")
        raise web.HTTPSeeOther("/?refused=disabled#unprocessed")
    if not isinstance(number, str) or not number.strip() or len(number) > 64:
        log.info("dashboard.callback_refused", reason="no_number")
        raise web.HTTPSeeOther("/?refused=number#unprocessed")
    try:
        intake = await callbacks_api.queue.request_callback(number.strip(), source="api")
    except QueueError as error:
        log.info("dashboard.callback_refused", reason=str(error))
        raise web.HTTPSeeOther("/?refused=number#unprocessed") from None
    log.info("dashboard.callback_requested", callback_id=intake.job.id, created=intake.created)
    raise web.HTTPSeeOther(f"/?queued={intake.job.id}#unprocessed")


def register(app: web.Application) -> None:
    app.router.add_get("/", dashboard)
    mark_heavy(app, dashboard)
    app.router.add_post("/callbacks", call_back_now)
    app.router.add_get("/login", login_form)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
