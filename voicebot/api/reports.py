"""Reports over HTTP, each as JSON or, with `?format=csv`, as CSV in UTF-8
with a BOM (so Excel opens Cyrillic names right) and local times.

    GET /api/v1/reports/missed       missed and unprocessed calls
    GET /api/v1/reports/categories   count and value sum per category and manager
    GET /api/v1/reports/hourly       calls by hour of day x weekday
    GET /api/v1/reports/summary      answered/missed, avg wait and talk, per direction
    GET /api/v1/reports/coverage     share of answered calls categorized, per manager
    GET /api/v1/reports/callbacks    callback jobs: time to first callback, share recovered,
                                     attempts per job (jobs by their first missed call)

Without `from`, a report covers the last 7 days (today included) in
`journal.timezone`.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from aiohttp import web
from pydantic import BaseModel, Field

from voicebot.api.body import Body
from voicebot.api.calls import CallOut
from voicebot.api.context import JournalApi, journal_api
from voicebot.api.heavy_read import answer
from voicebot.api.period import Period, PeriodQuery
from voicebot.api.schema import Routes, parse_query
from voicebot.journal import reports
from voicebot.journal.calls import CallLog
from voicebot.journal.reports import ReportScope
from voicebot.slices import SLICE, json_in_slices, map_in_slices

M = TypeVar("M", bound=BaseModel)

DEFAULT_DAYS = 7


class ReportQuery(PeriodQuery):
    manager: str | None = Field(None, max_length=64, description="only this manager's calls")
    format: Literal["json", "csv"] = "json"


class PeriodOut(BaseModel):
    from_: str | None = Field(serialization_alias="from")
    to: str | None
    timezone: str


class MissedCallOut(CallOut):
    unprocessed: bool


class MissedReportOut(BaseModel):
    period: PeriodOut
    missed: int
    unprocessed: int
    truncated: bool = Field(description="more missed calls than listed; counts are complete")
    calls: list[MissedCallOut]


class CategoryRowOut(BaseModel):
    code: str
    name: str
    manager: str | None
    calls: int
    value_sum: float


class CategoryReportOut(BaseModel):
    period: PeriodOut
    totals: list[CategoryRowOut]
    by_manager: list[CategoryRowOut]


class HourlyReportOut(BaseModel):
    period: PeriodOut
    weekdays: list[str]
    calls: list[list[int]] = Field(description="[weekday][hour], Monday first, local time")
    missed: list[list[int]]


class SummaryRowOut(BaseModel):
    direction: Literal["inbound", "outbound"]
    calls: int
    answered: int
    missed: int
    answered_ratio: float | None
    avg_wait_s: float | None
    avg_talk_s: float | None


class SummaryReportOut(BaseModel):
    period: PeriodOut
    directions: list[SummaryRowOut]


class CoverageRowOut(BaseModel):
    manager: str
    answered: int
    categorized: int
    coverage: float


class CallbackReportOut(BaseModel):
    period: PeriodOut
    jobs: int = Field(description="callback jobs whose first missed call is in the period")
    by_state: dict[str, int]
    share_recovered: float | None = Field(
        description="completed / jobs that ended after being dialled (open and skipped left out)"
    )
    avg_first_callback_s: float | None = Field(
        description="first missed call to first attempt, jobs dialled at least once"
    )
    median_first_callback_s: float | None
    attempts_per_job: float | None = Field(description="over jobs dialled at least once")


class CoverageReportOut(BaseModel):
    period: PeriodOut
    managers: list[CoverageRowOut]


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def local_text(seconds: float | None, zone: ZoneInfo) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, zone).strftime("%Y-%m-%d %H:%M:%S")


def scope_of(request: web.Request, api: JournalApi) -> tuple[ReportScope, PeriodOut, ReportQuery]:
    query = parse_query(request, ReportQuery)
    period = query.period(request, api.zone, default_days=DEFAULT_DAYS, now=api.clock.now())
    scope = ReportScope(period.since, period.until, api.zone, api.call_log.rules, query.manager)
    return scope, period_out(period, api.zone), query


def period_out(period: Period, zone: ZoneInfo) -> PeriodOut:
    return PeriodOut(from_=_iso(period.since), to=_iso(period.until), timezone=zone.key)


@dataclass(frozen=True, slots=True)
class CsvTable:
    """A report as CSV rows: what `?format=csv` and `voicebot report --csv` write.

    `rows` may be lazy (a generator, read once): the missed report's 1000
    rows each parse and format a local time, 10-15 ms in one go, which
    `encoded_in_slices` spreads over the event loop."""

    name: str
    header: Sequence[str]
    rows: Iterable[Sequence[Any]]

    def text(self) -> str:
        """UTF-8 text with a BOM first, so Excel opens Cyrillic names right."""
        buffer = io.StringIO()
        buffer.write("\ufeff")
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(self.header)
        writer.writerows(self.rows)
        return buffer.getvalue()

    async def encoded_in_slices(self, size: int = SLICE) -> bytes:
        """`text()` as UTF-8, `size` rows at a time with a yield to the loop
        between (the media clock's ticks go in between, issue 6 item 10)."""
        buffer = io.StringIO()
        buffer.write("\ufeff")
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(self.header)
        for n, row in enumerate(self.rows, 1):
            writer.writerow(row)
            if n % size == 0:
                await asyncio.sleep(0)
        return buffer.getvalue().encode("utf-8")


async def csv_body(table: CsvTable) -> Body:
    return Body(
        await table.encoded_in_slices(),
        "text/csv",
        headers=(("Content-Disposition", f'attachment; filename="{table.name}.csv"'),),
    )


async def json_body(model: BaseModel) -> Body:
    if isinstance(model, MissedReportOut):  # up to 1000 calls: in slices
        return Body.json(await json_in_slices(model, "calls"))
    return Body.json(model.model_dump_json(by_alias=True))


# -- the reports as models (the dashboard uses these too) ----------------------


async def missed_report(
    call_log: CallLog, scope: ReportScope, period: PeriodOut
) -> MissedReportOut:
    report = await reports.missed(call_log.reader, scope)
    rules = call_log.rules
    calls = await map_in_slices(
        lambda m: MissedCallOut.model_validate(
            m.call.as_json(rules) | {"unprocessed": m.unprocessed}
        ),
        report.calls,
    )
    return MissedReportOut(
        period=period,
        missed=report.missed,
        unprocessed=report.unprocessed,
        truncated=report.truncated,
        calls=calls,
    )


#: The journal's report behind each API model but the missed calls; the
#: field a list of rows goes in (a report that is a dataclass fills the
#: model's fields of the same names).
_SOURCES: dict[type[BaseModel], tuple[Callable[..., Awaitable[Any]], str | None]] = {
    CategoryReportOut: (reports.categories, None),
    HourlyReportOut: (reports.hourly, None),
    SummaryReportOut: (reports.summary, "directions"),
    CoverageReportOut: (reports.coverage, "managers"),
    CallbackReportOut: (reports.callbacks, None),
}


async def report_of(model: type[M], call_log: CallLog, scope: ReportScope, period: PeriodOut) -> M:
    """The journal's report of `model` over `scope`, as that model."""
    compute, rows_field = _SOURCES[model]
    found = await compute(call_log.reader, scope)
    fields = (
        {rows_field: found}
        if rows_field
        else {f.name: getattr(found, f.name) for f in dataclasses.fields(found)}
    )
    return model.model_validate(fields | {"period": period}, from_attributes=True)


# -- CSV shapes ------------------------------------------------------------------


def missed_csv(report: MissedReportOut, zone: ZoneInfo) -> CsvTable:
    def local(text: str | None) -> str:
        if text is None:
            return ""
        return local_text(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp(), zone)

    return CsvTable(
        "missed",
        ["id", "started_at", "client_number", "company_number", "manager", "status", "wait_s",
         "unprocessed"],
        (
            [c.id, local(c.started_at), c.client_number or "", c.company_number or "",
             c.manager or "", c.status, "" if c.wait_s is None else c.wait_s,
             "yes" if c.unprocessed else "no"]
            for c in report.calls
        ),
    )  # fmt: skip


def category_csv(report: CategoryReportOut, zone: ZoneInfo) -> CsvTable:
    rows = [[r.code, r.name, r.manager or "", r.calls, r.value_sum] for r in report.by_manager]
    rows += [[r.code, r.name, "(all)", r.calls, r.value_sum] for r in report.totals]
    return CsvTable("categories", ["code", "name", "manager", "calls", "value_sum"], rows)


def hourly_csv(report: HourlyReportOut, zone: ZoneInfo) -> CsvTable:
    return CsvTable(
        "hourly",
        ["weekday", *(f"{h:02d}" for h in range(24))],
        [[day, *counts] for day, counts in zip(report.weekdays, report.calls, strict=True)],
    )


def summary_csv(report: SummaryReportOut, zone: ZoneInfo) -> CsvTable:
    fields = list(SummaryRowOut.model_fields)
    return CsvTable(
        "summary",
        fields,
        [[("" if (v := getattr(r, f)) is None else v) for f in fields] for r in report.directions],
    )


def coverage_csv(report: CoverageReportOut, zone: ZoneInfo) -> CsvTable:
    fields = list(CoverageRowOut.model_fields)
    return CsvTable("coverage", fields, [[getattr(r, f) for f in fields] for r in report.managers])


def callback_csv(report: CallbackReportOut, zone: ZoneInfo) -> CsvTable:
    fields = ["jobs", *(f"state_{s}" for s in reports.JOB_STATES), "share_recovered",
              "avg_first_callback_s", "median_first_callback_s", "attempts_per_job"]  # fmt: skip
    values = [report.jobs, *(report.by_state.get(s, 0) for s in reports.JOB_STATES),
              report.share_recovered, report.avg_first_callback_s,
              report.median_first_callback_s, report.attempts_per_job]  # fmt: skip
    return CsvTable("callbacks", fields, [["" if v is None else v for v in values]])


@dataclass(frozen=True, slots=True)
class Report:
    """One report of /api/v1/reports and `voicebot report`: its summary, its
    JSON model and its CSV shape."""

    summary: str
    model: type[BaseModel]
    as_csv: Callable[[Any, ZoneInfo], CsvTable]

    async def build(self, call_log: CallLog, scope: ReportScope, period: PeriodOut) -> BaseModel:
        if self.model is MissedReportOut:
            return await missed_report(call_log, scope, period)
        return await report_of(self.model, call_log, scope, period)

    async def handle(self, request: web.Request) -> web.Response:
        scope, period, query = scope_of(request, journal_api(request))
        return await answer(request, ReportJob(self, scope, period, query.format))


@dataclass(frozen=True, slots=True)
class ReportJob:
    """One report over HTTP, its query validated (voicebot/api/body.py)."""

    report: Report
    scope: ReportScope
    period: PeriodOut
    format: Literal["json", "csv"]

    async def body(self, call_log: CallLog) -> Body:
        built = await self.report.build(call_log, self.scope, self.period)
        if self.format == "csv":
            return await csv_body(self.report.as_csv(built, self.scope.zone))
        return await json_body(built)


REPORTS: dict[str, Report] = {
    "missed": Report("Missed and unprocessed calls", MissedReportOut, missed_csv),
    "categories": Report(
        "Calls and value sum per category and manager", CategoryReportOut, category_csv
    ),
    "hourly": Report("Calls by hour of day and weekday", HourlyReportOut, hourly_csv),
    "summary": Report(
        "Answered/missed ratio, average wait and talk, inbound and outbound apart",
        SummaryReportOut,
        summary_csv,
    ),
    "callbacks": Report(
        "Callback results: time to first callback, share recovered, attempts per job",
        CallbackReportOut,
        callback_csv,
    ),
    "coverage": Report(
        "Share of each manager's answered calls that got a category",
        CoverageReportOut,
        coverage_csv,
    ),
}


def register(app: web.Application) -> None:
    routes = Routes(app, "reports")
    for name, report in REPORTS.items():
        routes.add(
            "GET",
            f"/api/v1/reports/{name}",
            report.handle,
            report.model,
            query=ReportQuery,
            csv=True,
            summary=report.summary,
            operation_id=f"report_{name}",
            heavy=True,
        )
