"""Metrics and the operations server, for real: jobs run through JobService against the fake 302.ai on a real
SQLite store, and /healthz and /metrics are fetched over HTTP and parsed as Prometheus parses them."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from core import doubao
from core.config import load_settings
from core.job import JobState
from core.jobs import JobService
from core.metrics import API_ERROR_KINDS, Metrics
from core.ops_server import OpsServer, OpsServerError, ops_server
from storage import Store, open_store
from tests.core.test_jobs import RecordedEvents, draw, hold, job_service
from tests.fakes.doubao_server import FakeDoubao, FakeResponse


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def service(
    api: FakeDoubao, store: Store, session: aiohttp.ClientSession, metrics: Metrics
) -> AsyncIterator[JobService]:
    """A job service wired as bot.py wires it: the client and the service share one Metrics."""
    service = job_service(store, api, session, daily_limit=10, metrics=metrics, max_concurrent=1, max_per_user=5)
    await service.start(RecordedEvents())
    try:
        yield service
    finally:
        await service.shutdown()


async def state_of(service: JobService, job_id: str) -> JobState | None:
    job = await service.load(job_id)
    return None if job is None else job.state


def value(metrics: Metrics, name: str, **labels: str) -> float:
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


# -- counted where it happens -------------------------------------------------------------------------


def test_every_kind_of_api_error_has_a_series_from_the_start(metrics: Metrics) -> None:
    def subclasses(cls: type[doubao.DoubaoError]) -> set[type[doubao.DoubaoError]]:
        return {sub for direct in cls.__subclasses__() for sub in {direct} | subclasses(direct)}

    assert set(API_ERROR_KINDS) == {cls.kind for cls in subclasses(doubao.DoubaoError)}
    for kind in API_ERROR_KINDS:
        assert metrics.registry.get_sample_value("doubao_api_errors_total", {"kind": kind}) == 0


async def test_a_generated_image_observes_the_api_latency(service: JobService, metrics: Metrics) -> None:
    job = await service.submit(draw())
    await service.wait_idle()
    assert await state_of(service, job.id) is JobState.DONE
    assert value(metrics, "doubao_api_latency_seconds_count", endpoint="draw", outcome="ok") == 1
    assert 0 < value(metrics, "doubao_api_latency_seconds_sum", endpoint="draw", outcome="ok") < 5
    assert value(metrics, "doubao_api_latency_seconds_bucket", endpoint="draw", outcome="ok", le="120.0") == 1
    assert value(metrics, "doubao_refunds_total", reason="error.content_rejected") == 0
    assert sum(value(metrics, "doubao_api_errors_total", kind=kind) for kind in API_ERROR_KINDS) == 0


@pytest.mark.parametrize(
    ("response", "kind", "attempts", "reason"),
    [
        (FakeResponse.business_error(50411), "content_rejected", 1, "error.content_rejected"),
        (FakeResponse.http_status(429), "rate_limited", 2, "error.service_busy"),
        (FakeResponse.http_status(503), "service_unavailable", 2, "error.service_busy"),
        (FakeResponse.hang(), "timeout", 2, "error.service_busy"),
        (FakeResponse.gateway_error(-10004, "insufficient balance"), "account_error", 1, "error.bot_misconfigured"),
        (FakeResponse.no_image(), "bad_response", 1, "error.bad_response"),
    ],
)
async def test_an_api_error_is_classified_and_its_refund_counted(
    service: JobService,
    api: FakeDoubao,
    metrics: Metrics,
    response: FakeResponse,
    kind: str,
    attempts: int,
    reason: str,
) -> None:
    api.default_response = response
    await service.submit(draw())
    await service.wait_idle()
    assert value(metrics, "doubao_api_errors_total", kind=kind) == attempts  # every attempt, retries included
    assert sum(value(metrics, "doubao_api_errors_total", kind=other) for other in API_ERROR_KINDS) == attempts
    assert value(metrics, "doubao_api_latency_seconds_count", endpoint="draw", outcome="error") == attempts
    assert value(metrics, "doubao_api_latency_seconds_count", endpoint="draw", outcome="ok") == 0
    assert value(metrics, "doubao_refunds_total", reason=reason) == 1


async def test_a_cancelled_job_counts_as_a_refund_once(service: JobService, api: FakeDoubao, metrics: Metrics) -> None:
    started, release = hold(api)
    running = await service.submit(draw("first"))
    await started.wait()  # holding the one API slot: the second waits in the queue
    queued = await service.submit(draw("second"))
    assert await service.cancel(queued.id)
    assert not await service.cancel(queued.id)  # settled once, counted once
    release.set()
    await service.wait_idle()
    assert await state_of(service, running.id) is JobState.DONE
    assert value(metrics, "doubao_refunds_total", reason="status.cancelled") == 1
    assert value(metrics, "doubao_api_latency_seconds_count", endpoint="draw", outcome="ok") == 1


async def test_a_cancelled_api_call_is_neither_a_latency_nor_an_error(metrics: Metrics) -> None:
    with contextlib.suppress(asyncio.CancelledError), metrics.api_call("draw"):
        raise asyncio.CancelledError
    assert sum(value(metrics, "doubao_api_errors_total", kind=kind) for kind in API_ERROR_KINDS) == 0
    assert value(metrics, "doubao_api_latency_seconds_count", endpoint="draw", outcome="error") == 0


async def test_jobs_by_state_are_read_from_the_store_when_asked(
    service: JobService, store: Store, metrics: Metrics
) -> None:
    assert metrics.registry.get_sample_value("doubao_queue_depth") is None  # nothing read yet: nothing shown
    for n in range(2):
        await service.submit(draw(f"cat {n}"))
    await service.wait_idle()
    assert await metrics.read_store(store)
    assert value(metrics, "doubao_jobs", state="done") == 2
    assert metrics.registry.get_sample_value("doubao_jobs", {"state": "failed"}) == 0
    assert metrics.registry.get_sample_value("doubao_queue_depth") == 0


async def test_job_counts_are_left_out_when_the_store_fails(metrics: Metrics, tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/other.sqlite3") as other:
        assert await metrics.read_store(other)
    assert metrics.registry.get_sample_value("doubao_queue_depth") == 0
    assert not await metrics.read_store(other)  # closed now
    assert metrics.registry.get_sample_value("doubao_queue_depth") is None
    assert metrics.registry.get_sample_value("doubao_jobs", {"state": "done"}) is None


def test_metrics_objects_do_not_share_counts() -> None:
    first, second = Metrics(), Metrics()
    first.refunded("error.interrupted")
    assert value(first, "doubao_refunds_total", reason="error.interrupted") == 1
    assert value(second, "doubao_refunds_total", reason="error.interrupted") == 0


async def test_the_discord_trace_counts_429_answers_by_scope(metrics: Metrics) -> None:
    """The trace given to discord.py's http_trace, on a session of its own against a small local server."""

    async def answer(request: web.Request) -> web.Response:
        scope = request.query.get("scope")
        status = int(request.query.get("status", "200"))
        return web.Response(status=status, headers={"X-RateLimit-Scope": scope} if scope else {})

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        async with aiohttp.ClientSession(trace_configs=[metrics.discord_trace()]) as session:
            for query in ("status=429&scope=user", "status=429&scope=shared", "status=429", "status=200&scope=user"):
                async with session.get(base + "?" + query) as response:
                    await response.read()
    finally:
        await runner.cleanup()
    assert value(metrics, "doubao_discord_rate_limits_total", scope="user") == 1
    assert value(metrics, "doubao_discord_rate_limits_total", scope="shared") == 1
    assert value(metrics, "doubao_discord_rate_limits_total", scope="unknown") == 1  # e.g. Cloudflare's, no scope
    assert value(metrics, "doubao_discord_rate_limits_total", scope="global") == 0


# -- the operations server ----------------------------------------------------------------------------

Fetch = Callable[..., Awaitable[tuple[int, str]]]


@pytest.fixture
async def serve(
    store: Store, metrics: Metrics, session: aiohttp.ClientSession
) -> AsyncIterator[Callable[..., Awaitable[Fetch]]]:
    """Starts an OpsServer on a free port of 127.0.0.1; returns a GET on it: (status, body), or (status, content
    type) with `content_type=True`."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(ready: Callable[[], bool] = lambda: True, on: Store | None = None) -> Fetch:
            server = OpsServer(metrics=metrics, store=on or store, ready=ready, port=0)
            await stack.enter_async_context(server)

            async def fetch(path: str, *, accept: str = "*/*", content_type: bool = False) -> tuple[int, str]:
                url = f"http://127.0.0.1:{server.port}{path}"
                async with session.get(url, headers={"Accept": accept}) as response:
                    return response.status, response.content_type if content_type else await response.text()

            return fetch

        yield start


def families(text: str) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def sample(text: str, name: str, **labels: str) -> float:
    found = [
        s.value for family in families(text).values() for s in family.samples if s.name == name and s.labels == labels
    ]
    assert len(found) == 1, (name, labels, text)
    return found[0]


async def test_healthz_is_ok_when_connected_and_the_store_answers(serve) -> None:
    fetch = await serve()
    status, body = await fetch("/healthz")
    assert status == 200
    assert body == '{"status": "ok", "discord": true, "store": true}'


async def test_healthz_is_503_until_connected(serve) -> None:
    connected = False
    fetch = await serve(ready=lambda: connected)
    assert await fetch("/healthz") == (503, '{"status": "unavailable", "discord": false, "store": true}')
    connected = True
    assert (await fetch("/healthz"))[0] == 200


async def test_healthz_is_503_when_the_store_does_not_answer(serve, tmp_path: Path) -> None:
    async with open_store(f"sqlite:///{tmp_path}/closed.sqlite3") as closed:
        pass  # closed on leaving
    fetch = await serve(on=closed)
    assert await fetch("/healthz") == (503, '{"status": "unavailable", "discord": true, "store": false}')
    status, body = await fetch("/metrics")  # the process's own counters are still served, without job counts
    assert status == 200
    assert "doubao_api_errors_total" in body and "doubao_jobs{" not in body and "doubao_queue_depth " not in body


async def test_metrics_show_jobs_by_state_and_the_queue_read_at_scrape_time(
    serve, service: JobService, api: FakeDoubao
) -> None:
    started, release = hold(api)
    fetch = await serve()
    for n in range(3):  # one runs (one API slot), two wait
        await service.submit(draw(f"cat {n}"))
    await started.wait()
    status, text = await fetch("/metrics")
    assert status == 200
    assert sample(text, "doubao_queue_depth") == 2
    assert sample(text, "doubao_jobs", state="queued") == 2
    assert sample(text, "doubao_jobs", state="running") == 1
    assert sample(text, "doubao_jobs", state="done") == 0

    release.set()
    await service.wait_idle()
    status, text = await fetch("/metrics")
    assert sample(text, "doubao_queue_depth") == 0
    assert sample(text, "doubao_jobs", state="done") == 3
    assert sample(text, "doubao_api_latency_seconds_count", endpoint="draw", outcome="ok") == 3
    kinds = families(text)
    assert kinds["doubao_api_latency_seconds"].type == "histogram"
    assert kinds["doubao_api_errors"].type == "counter"
    assert kinds["doubao_refunds"].type == "counter"
    assert kinds["doubao_discord_rate_limits"].type == "counter"
    assert kinds["doubao_jobs"].type == "gauge" and kinds["doubao_queue_depth"].type == "gauge"


async def test_metrics_speak_openmetrics_to_a_scraper_that_asks(serve) -> None:
    fetch = await serve()
    assert await fetch("/metrics", content_type=True) == (200, "text/plain")
    openmetrics = "application/openmetrics-text; version=1.0.0"
    assert await fetch("/metrics", accept=openmetrics, content_type=True) == (200, "application/openmetrics-text")
    _, body = await fetch("/metrics", accept=openmetrics)
    assert body.endswith("# EOF\n") and "doubao_api_errors_total" in body


async def test_other_paths_are_not_found(serve) -> None:
    fetch = await serve()
    assert (await fetch("/"))[0] == 404


async def test_a_port_in_use_is_one_clear_error(store: Store, metrics: Metrics) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = OpsServer(metrics=metrics, store=store, ready=lambda: True, port=port)
        with pytest.raises(OpsServerError, match=f"cannot listen on 127.0.0.1:{port}"):
            await server.start()


async def test_no_port_no_server(store: Store, metrics: Metrics) -> None:
    settings = load_settings({"DISCORD_TOKEN": "t", "AI302_API_KEY": "k"})
    assert (settings.metrics_port, settings.metrics_host) == (None, "127.0.0.1")
    async with ops_server(settings, metrics=metrics, store=store, ready=lambda: True) as server:
        assert server is None
