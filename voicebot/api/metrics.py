"""`GET /metrics` in the Prometheus text format.

Counters live where the work happens (`voicebot.counters.CallCounters`,
the webhook dispatcher's own); a collector reads them at scrape time, so nothing is
registered globally and every app instance (and test) has its own registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from voicebot.counters import CallCounters
from voicebot.journal.call_types import CALL_TYPES
from voicebot.journal.reports import CallTally


@dataclass
class JournalFigures:
    """The call journal's figures, read from the database right before each
    scrape (`voicebot.app` refreshes them; the collector cannot await)."""

    #: Calls of today (the local day in journal.timezone), by status and type.
    today: CallTally | None = None
    #: (source, status) -> calls the journal recorded since start.
    recorded: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class CallbackFigures:
    """The callback queue as stored, read by the /metrics handler just
    before the scrape (the collector itself cannot await the database)."""

    jobs_by_state: dict[str, int] = field(default_factory=dict)
    attempts_by_outcome: dict[str, int] = field(default_factory=dict)


#: Every job state, so a state with no jobs reads 0 rather than vanishing.
CALLBACK_STATES = (
    "queued",
    "dialling",
    "completed",
    "not_needed",
    "failed",
    "cancelled",
    "skipped",
)


@dataclass(frozen=True)
class MetricsSources:
    calls: CallCounters
    active_calls: Callable[[], int]
    registered: Callable[[], bool | None]
    webhooks: Callable[[], dict[str, int]]
    callbacks: CallbackFigures | None = None
    media_clock_skips: Callable[[], int] = field(default=lambda: 0)
    api_refused: Callable[[], int] = field(default=lambda: 0)
    sip_refusals: Callable[[], dict[str, int]] = field(default=dict)
    journal: JournalFigures | None = None


class _VoicebotCollector(Collector):
    def __init__(self, sources: MetricsSources) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        calls = self._sources.calls
        outcomes = CounterMetricFamily(
            "voicebot_calls", "Post-call menu calls by outcome", labels=["outcome"]
        )
        for outcome in ("answered", "confirmed", "incomplete", "failed"):
            outcomes.add_metric([outcome], getattr(calls, outcome))
        yield outcomes
        keys = CounterMetricFamily("voicebot_keys", "Keypad keys received", labels=["source"])
        keys.add_metric(["rfc4733"], calls.keys_rfc4733)
        keys.add_metric(["sip_info"], calls.keys_info)
        keys.add_metric(["inband"], calls.keys_inband)
        yield keys
        yield CounterMetricFamily(
            "voicebot_rtp_malformed",
            "RTP datagrams dropped as malformed",
            value=calls.rtp_malformed,
        )
        yield CounterMetricFamily(
            "voicebot_rtp_refused",
            "RTP datagrams refused: not from the call's media source (strict RTP)",
            value=calls.rtp_refused,
        )
        yield GaugeMetricFamily(
            "voicebot_active_calls", "Calls in the menu now", value=self._sources.active_calls()
        )
        registered = self._sources.registered()
        if registered is not None:
            yield GaugeMetricFamily(
                "voicebot_sip_registered", "1 when registered at the PBX", value=int(registered)
            )
        webhooks = CounterMetricFamily(
            "voicebot_webhook_events", "Webhook dispatcher counters", labels=["kind"]
        )
        for kind, value in sorted(self._sources.webhooks().items()):
            webhooks.add_metric([kind], value)
        yield webhooks
        figures = self._sources.callbacks
        if figures is not None:
            jobs = GaugeMetricFamily(
                "voicebot_callback_jobs", "Callback jobs by state, as stored", labels=["state"]
            )
            for state in CALLBACK_STATES:
                jobs.add_metric([state], figures.jobs_by_state.get(state, 0))
            yield jobs
            attempts = GaugeMetricFamily(
                "voicebot_callback_attempts",
                "Callback attempts by outcome, as stored (in_progress: ringing now)",
                labels=["outcome"],
            )
            for outcome, count in sorted(figures.attempts_by_outcome.items()):
                attempts.add_metric([outcome], count)
            yield attempts
        yield CounterMetricFamily(
            "voicebot_media_clock_skipped_ticks",
            "20 ms media ticks skipped because the event loop was late by more than 5",
            value=self._sources.media_clock_skips(),
        )
        yield CounterMetricFamily(
            "voicebot_http_busy_refused",
            "HTTP requests answered 503 because http.api_concurrency + api_queue were full",
            value=self._sources.api_refused(),
        )
        sip = CounterMetricFamily(
            "voicebot_sip_refused", "SIP requests refused or shed, by reason", labels=["reason"]
        )
        for reason, value in sorted(self._sources.sip_refusals().items()):
            sip.add_metric([reason], value)
        yield sip
        if self._sources.journal is not None:
            yield from self._journal(self._sources.journal)

    @staticmethod
    def _journal(figures: JournalFigures) -> Iterator[Metric]:
        recorded = CounterMetricFamily(
            "voicebot_journal_calls_recorded",
            "Calls the journal recorded since start, by source and status",
            labels=["source", "status"],
        )
        for (source, status), value in sorted(figures.recorded.items()):
            recorded.add_metric([source, status], value)
        yield recorded
        if figures.today is None:
            return
        by_status = GaugeMetricFamily(
            "voicebot_journal_calls_today",
            "Calls in the journal today (journal.timezone), by direction and status",
            labels=["direction", "status"],
        )
        for (direction, status), value in sorted(figures.today.by_status.items()):
            by_status.add_metric([direction, status], value)
        yield by_status
        by_type = GaugeMetricFamily(
            "voicebot_journal_call_types_today",
            "Calls in the journal today by call type (a call may have several)",
            labels=["type"],
        )
        for name in CALL_TYPES:
            by_type.add_metric([name], figures.today.by_type.get(name, 0))
        yield by_type


def metrics_text(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def build_registry(sources: MetricsSources) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=True)
    registry.register(_VoicebotCollector(sources))
    return registry
