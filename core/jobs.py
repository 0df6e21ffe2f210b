"""The life of one generation: reserve quota, call the API, fetch the image, deliver, then commit or refund.

This is the one place that decides that a failed generation costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from core.config import ApiExtras
from core.doubao import (
    AccountError,
    ContentRejected,
    DoubaoClient,
    DoubaoError,
    Endpoint,
    GeneratedImage,
    RateLimited,
    ServiceUnavailable,
)
from core.errors import JobFailed
from core.images import DownloadedImage, ImageDownloadError, download_image, fit_to_limit_async, from_bytes
from core.params import Command, Params, with_seed
from core.quota import QuotaService, QuotaStatus

log = logging.getLogger(__name__)

ENDPOINTS = {Command.DRAW: Endpoint.DRAW, Command.CHARACTER: Endpoint.CHARACTER}


@dataclass(frozen=True)
class GenerationRequest:
    command: Command
    params: Params
    guild_id: int
    channel_id: int
    user_id: int


@dataclass(frozen=True)
class GenerationResult:
    job_id: str
    request: GenerationRequest
    params: Params  # as sent, with the seed actually used
    image: DownloadedImage
    quota: QuotaStatus


class DeliveryError(Exception):
    """The image could not be posted; raised by the delivery callback."""


Deliver = Callable[[GenerationResult], Awaitable[None]]


class JobRunner:
    def __init__(
        self,
        *,
        quota: QuotaService,
        client: DoubaoClient,
        session: aiohttp.ClientSession,
        extras: ApiExtras,
        max_concurrent_jobs: int,
        max_download_bytes: int = 30 * 1024 * 1024,
    ) -> None:
        self._quota = quota
        self._client = client
        self._session = session
        self._extras = extras
        self._api_slots = asyncio.Semaphore(max_concurrent_jobs)
        self._max_download_bytes = max_download_bytes

    async def generate(
        self, request: GenerationRequest, deliver: Deliver, *, upload_limit: int
    ) -> GenerationResult:
        """Runs one generation to the end.

        Raises QuotaExhausted before anything is spent, or JobFailed after the reservation was given back.
        """
        job_id = uuid.uuid4().hex
        quota = await self._quota.reserve(job_id=job_id, guild_id=request.guild_id, user_id=request.user_id)
        log.info(
            "job %s reserved: %s by user %s in guild %s",
            job_id,
            request.command,
            request.user_id,
            request.guild_id,
        )
        try:
            result = await self._produce(job_id, request, quota, upload_limit)
            try:
                await deliver(result)
            except Exception as exc:
                raise JobFailed("error.delivery_failed") from exc
        except BaseException as exc:
            refunded = await asyncio.shield(self._quota.refund(job_id))
            log.warning("job %s failed (%s), quota refunded: %s", job_id, _describe(exc), refunded)
            if isinstance(exc, JobFailed | asyncio.CancelledError):
                raise
            raise _as_job_failed(exc) from exc
        await self._quota.commit(job_id)
        log.info("job %s delivered and committed", job_id)
        return result

    async def _produce(
        self, job_id: str, request: GenerationRequest, quota: QuotaStatus, upload_limit: int
    ) -> GenerationResult:
        params = with_seed(request.params)
        started = time.monotonic()
        async with self._api_slots:
            generated = await self._client.generate(ENDPOINTS[request.command], params.payload(self._extras))
        log.info("job %s generated in %.1fs", job_id, time.monotonic() - started)
        image = await self._fetch(generated)
        image = await fit_to_limit_async(image, upload_limit)
        return GenerationResult(job_id=job_id, request=request, params=params, image=image, quota=quota)

    async def _fetch(self, generated: GeneratedImage) -> DownloadedImage:
        if generated.data is not None:
            return from_bytes(generated.data)
        assert generated.url is not None
        return await download_image(self._session, generated.url, max_bytes=self._max_download_bytes)


def _as_job_failed(exc: BaseException) -> JobFailed:
    if isinstance(exc, ContentRejected):
        return JobFailed("error.content_rejected")
    if isinstance(exc, RateLimited | ServiceUnavailable):
        return JobFailed("error.service_busy")
    if isinstance(exc, AccountError):
        return JobFailed("error.bot_misconfigured")
    if isinstance(exc, DoubaoError):
        return JobFailed("error.bad_response")
    if isinstance(exc, ImageDownloadError):
        return JobFailed("error.download_failed")
    log.error("unexpected failure in a job", exc_info=exc)
    return JobFailed("error.unexpected")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, JobFailed):
        return f"{exc.key} ({_describe(exc.__cause__)})" if exc.__cause__ else exc.key
    return f"{type(exc).__name__}: {exc}"
