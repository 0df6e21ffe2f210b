"""What the bot measures, in Prometheus terms; `core/ops_server.py` serves it at `/metrics`.

Every `Metrics` has a registry of its own (never prometheus_client's global one), so tests and several bots in one
process each count on their own. Counters and the latency histogram are this process's; a Prometheus server sums
them over the processes. Jobs by state and the queue depth are read from the store when scraped, so they are the
whole bot's, the same in every process sharing a database (take their max, not their sum).

| metric                                   | type      | labels              | what                                   |
|------------------------------------------|-----------|---------------------|----------------------------------------|
| doubao_jobs                              | gauge     | state               | jobs in the database by state          |
| doubao_queue_depth                       | gauge     |                     | jobs waiting in the queue              |
| doubao_api_latency_seconds               | histogram | endpoint, outcome   | one call to 302.ai (each attempt)      |
| doubao_api_errors_total                  | counter   | kind                | failed calls to 302.ai (each attempt)  |
| doubao_refunds_total                     | counter   | reason              | jobs ended without an image, refunded  |
| doubao_discord_rate_limits_total         | counter   | scope               | HTTP 429 answers from Discord          |
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Iterator
from types import SimpleNamespace

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric

from storage.base import Store

log = logging.getLogger(__name__)

# The `kind` of every DoubaoError subclass (tests/core/test_metrics.py keeps the two in step): each series exists
# from the start at 0, so a rate() over it has a beginning.
API_ERROR_KINDS = (
    "content_rejected",
    "rate_limited",
    "service_unavailable",
    "timeout",
    "account_error",
    "bad_response",
)
# A generation usually takes 10-30 s; calls are cut at API_TIMEOUT_SECONDS (120 s by default). Fast answers are
# refusals and errors.
LATENCY_BUCKETS = (0.5, 1, 2.5, 5, 7.5, 10, 15, 20, 25, 30, 45, 60, 90, 120, 180)
# Discord's X-RateLimit-Scope; a 429 without it (Cloudflare) or with another value counts as "unknown".
RATE_LIMIT_SCOPES = ("user", "global", "shared")
STORE_TIMEOUT = 5.0  # seconds a scrape waits for the job counts


class Metrics:
    """The bot's metrics. Pass one to DoubaoClient, JobService and the Discord client (`discord_trace()`)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.api_latency = Histogram(
            "doubao_api_latency_seconds",
            "Time taken by one call to 302.ai (each attempt, retries included), by endpoint and outcome (ok, error).",
            ["endpoint", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.api_errors = Counter(
            "doubao_api_errors",
            "Failed calls to 302.ai (each attempt, retries included), by kind of error.",
            ["kind"],
            registry=self.registry,
        )
        self.refunds = Counter(
            "doubao_refunds",
            "Jobs settled without a posted image, their quota given back, by reason (the message key shown).",
            ["reason"],
            registry=self.registry,
        )
        self.discord_rate_limits = Counter(
            "doubao_discord_rate_limits",
            "HTTP 429 answers from Discord (REST and interaction webhooks), by X-RateLimit-Scope.",
            ["scope"],
            registry=self.registry,
        )
        for kind in API_ERROR_KINDS:
            self.api_errors.labels(kind=kind)
        for scope in (*RATE_LIMIT_SCOPES, "unknown"):
            self.discord_rate_limits.labels(scope=scope)
        self._jobs = _JobCounts()
        self.registry.register(self._jobs)
        ProcessCollector(registry=self.registry)  # process_* (memory, CPU, open files), on Linux

    @contextlib.contextmanager
    def api_call(self, endpoint: str) -> Iterator[None]:
        """Times one call to 302.ai; an exception raised inside counts as an error of its `kind` (a DoubaoError's).
        A cancelled call is not a latency, and is not counted."""
        started = time.monotonic()
        try:
            yield
        except Exception as exc:
            self.api_errors.labels(kind=getattr(exc, "kind", "unexpected")).inc()
            self.api_latency.labels(endpoint=endpoint, outcome="error").observe(time.monotonic() - started)
            raise
        self.api_latency.labels(endpoint=endpoint, outcome="ok").observe(time.monotonic() - started)

    def refunded(self, reason: str | None) -> None:
        self.refunds.labels(reason=reason or "unknown").inc()

    def discord_rate_limited(self, scope: str | None) -> None:
        scope = (scope or "").lower()
        self.discord_rate_limits.labels(scope=scope if scope in RATE_LIMIT_SCOPES else "unknown").inc()

    def discord_trace(self) -> aiohttp.TraceConfig:
        """Counts Discord's 429s, for discord.py's `http_trace` option: its HTTP session carries the REST calls and
        the interaction webhooks alike, and the trace sees every answer whatever is logged or retried."""

        async def on_request_end(
            session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            if params.response.status == 429:
                self.discord_rate_limited(params.response.headers.get("X-RateLimit-Scope"))

        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(on_request_end)
        return trace

    async def read_store(self, store: Store) -> bool:
        """Reads the job counts for the next scrape; on failure they are left out of it (not shown stale)."""
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                self._jobs.counts = await store.job_counts()
        except Exception as exc:
            log.warning("metrics: could not read the job counts (%s)", type(exc).__name__)
            self._jobs.counts = None
            return False
        return True


class _JobCounts:
    """doubao_jobs and doubao_queue_depth from the counts `Metrics.read_store` read last."""

    def __init__(self) -> None:
        self.counts: dict[str, int] | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families({})

    def collect(self) -> Iterable[Metric]:
        return [] if self.counts is None else self._families(self.counts)

    @staticmethod
    def _families(counts: dict[str, int]) -> list[Metric]:
        jobs = GaugeMetricFamily(
            "doubao_jobs", "Jobs in the database by state, read when scraped (the whole bot's).", labels=["state"]
        )
        for state, count in sorted(counts.items()):
            jobs.add_metric([state], count)
        queue = GaugeMetricFamily("doubao_queue_depth", "Jobs waiting in the queue (state queued), read when scraped.")
        if counts:
            queue.add_metric([], counts.get("queued", 0))
        return [jobs, queue]
