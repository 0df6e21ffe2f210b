"""A small HTTP server for operations, on a port of its own (`METRICS_PORT`, off by default).

- `GET /healthz`: 200 `{"status": "ok", "discord": true, "store": true}` when the bot is connected to Discord and
  the database answers, else 503 with `"status": "unavailable"` and which of the two is not.
- `GET /metrics`: the Prometheus exposition of `Metrics` (text format, or OpenMetrics when the scraper asks for
  it), the job counts read from the store first.

It binds 127.0.0.1 unless told otherwise (`METRICS_HOST`): nothing it shows is secret, but nothing needs it beyond
the monitoring either. Whether the bot is connected is asked of a callable, so this module knows nothing of Discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from types import TracebackType

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from core.config import Settings
from core.metrics import STORE_TIMEOUT, Metrics
from storage.base import Store

log = logging.getLogger(__name__)

HEALTH_PROBE_KEY = "healthz"  # a meta key read (never written) to see that the database answers


class OpsServerError(Exception):
    """The server could not listen where it was told to."""


class OpsServer:
    def __init__(
        self, *, metrics: Metrics, store: Store, ready: Callable[[], bool], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._metrics = metrics
        self._store = store
        self._ready = ready
        self._host = host
        self._port = port
        self._exposition = make_aiohttp_handler(metrics.registry)
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The port listened on (the one picked by the system when asked for 0)."""
        assert self._runner is not None, "not started"
        address = self._runner.addresses[0]
        return int(address[1])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._serve_metrics)
        runner = web.AppRunner(app, access_log=None)  # a scrape every few seconds is not news
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as exc:
            await runner.cleanup()
            raise OpsServerError(f"cannot listen on {self._host}:{self._port} ({exc.strerror or exc})") from None
        self._runner = runner
        log.info("serving /healthz and /metrics on %s:%d", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> OpsServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _healthz(self, request: web.Request) -> web.Response:
        discord = self._ready()
        store = await self._store_answers()
        healthy = discord and store
        body = {"status": "ok" if healthy else "unavailable", "discord": discord, "store": store}
        return web.json_response(body, status=200 if healthy else 503)

    async def _store_answers(self) -> bool:
        try:
            async with asyncio.timeout(STORE_TIMEOUT):
                await self._store.get_meta(HEALTH_PROBE_KEY)
        except Exception as exc:
            log.warning("healthz: the database did not answer (%s)", type(exc).__name__)
            return False
        return True

    async def _serve_metrics(self, request: web.Request) -> web.StreamResponse:
        await self._metrics.read_store(self._store)
        return await self._exposition(request)


def ops_server(
    settings: Settings, *, metrics: Metrics, store: Store, ready: Callable[[], bool]
) -> contextlib.AbstractAsyncContextManager[OpsServer | None]:
    """The server on METRICS_HOST:METRICS_PORT while in the `async with`; nothing at all when no port is set."""
    if settings.metrics_port is None:
        return contextlib.nullcontext()
    return OpsServer(metrics=metrics, store=store, ready=ready, host=settings.metrics_host, port=settings.metrics_port)
