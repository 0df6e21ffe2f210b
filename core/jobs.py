"""Jobs from request to posted image: admission, a fair queue, the API call, delivery, and settling.

This is the one place that decides what a job costs: its quota is reserved with the job row, committed
when the image was posted and refunded on any other ending, exactly once (the store enforces it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol, overload

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
from core.errors import UserFacingError
from core.fair_queue import FairQueue
from core.images import DownloadedImage, ImageDownloadError, download_image, fit_to_limit_async, from_bytes
from core.params import CharacterParams, Command, Params, params_from_dict, params_to_dict, with_seed
from core.quota import Clock, QuotaService, QuotaStatus, exhausted, utc_now
from storage.base import ACTIVE_STATES, JobRow, Store

log = logging.getLogger(__name__)

ENDPOINTS = {Command.DRAW: Endpoint.DRAW, Command.CHARACTER: Endpoint.CHARACTER}
# Use the interaction token only while it has this much life left; after that, write to the channel.
TOKEN_SAFETY_MARGIN = timedelta(seconds=30)
MAX_DOWNLOAD_BYTES = 30 * 1024 * 1024
ANNOUNCE_EXACTLY = 10  # queue positions up to this are shown exactly


class JobState(StrEnum):
    PENDING = "pending"  # waiting for a moderator
    QUEUED = "queued"
    RUNNING = "running"
    DELIVERING = "delivering"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ReplyTarget:
    """How to reach the requester: the interaction's webhook while its token lives, else the channel."""

    application_id: int | None = None
    token: str | None = field(default=None, repr=False)
    token_expires_at: datetime | None = None
    status_message_id: int | None = None
    upload_limit: int = 10 * 1024 * 1024

    def token_usable(self, now: datetime) -> bool:
        return (
            self.token is not None
            and self.token_expires_at is not None
            and now < self.token_expires_at - TOKEN_SAFETY_MARGIN
        )


@dataclass(frozen=True)
class JobRequest:
    command: Command
    params: Params
    guild_id: int
    channel_id: int
    user_id: int
    language: str
    reply: ReplyTarget
    role_ids: frozenset[int] = frozenset()
    quota_limit: int | None = None  # the limit found when the request was admitted; else looked up with role_ids
    needs_approval: bool = False
    approval_timeout: timedelta = timedelta(hours=1)


@dataclass
class Job:
    id: str
    command: Command
    params: Params
    guild_id: int
    channel_id: int
    user_id: int
    language: str
    reply: ReplyTarget
    state: JobState = JobState.QUEUED
    error: str | None = None
    note: str | None = None
    result_message_id: int | None = None
    approval_message_id: int | None = None
    approval_expires_at: datetime | None = None
    quota_limit: int | None = None  # the requester's limit when they asked, shown under the image
    created_at: datetime | None = None

    @classmethod
    def from_row(cls, row: JobRow) -> Job:
        command = Command(row.command)
        return cls(
            id=row.id,
            command=command,
            params=params_from_dict(command, row.params),
            guild_id=row.guild_id,
            channel_id=row.channel_id,
            user_id=row.user_id,
            language=row.language,
            reply=ReplyTarget(
                application_id=row.application_id,
                token=row.interaction_token,
                token_expires_at=_parse_time(row.token_expires_at),
                status_message_id=row.status_message_id,
                upload_limit=row.upload_limit,
            ),
            state=JobState(row.state),
            error=row.error,
            note=row.note,
            result_message_id=row.result_message_id,
            approval_message_id=row.approval_message_id,
            approval_expires_at=_parse_time(row.approval_expires_at),
            quota_limit=row.quota_limit,
            created_at=_parse_time(row.created_at),
        )

    def to_row(self) -> JobRow:
        expires = self.reply.token_expires_at
        return JobRow(
            id=self.id,
            guild_id=self.guild_id,
            channel_id=self.channel_id,
            user_id=self.user_id,
            command=self.command.value,
            params=params_to_dict(self.params),
            language=self.language,
            state=self.state.value,
            error=self.error,
            note=self.note,
            application_id=self.reply.application_id,
            interaction_token=self.reply.token,
            token_expires_at=expires.isoformat() if expires else None,
            status_message_id=self.reply.status_message_id,
            result_message_id=self.result_message_id,
            approval_message_id=self.approval_message_id,
            approval_expires_at=_format_time(self.approval_expires_at),
            upload_limit=self.reply.upload_limit,
            quota_limit=self.quota_limit,
        )


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@overload
def _format_time(value: datetime) -> str: ...
@overload
def _format_time(value: datetime | None) -> str | None: ...
def _format_time(value: datetime | None) -> str | None:
    """Fixed precision, so stored times compare correctly as text."""
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


class JobEvents(Protocol):
    """What the chat side does as a job moves; implemented by the Discord layer."""

    def progress(self, job: Job, position: int | None) -> None:
        """Queued at `position` (1-based), or with None: waiting for a moderator (job.state PENDING) or
        generating. Fire and forget."""

    async def deliver(self, job: Job, image: DownloadedImage, quota: QuotaStatus) -> int:
        """Posts the image; returns the message id. Raises DeliveryError when it cannot."""
        ...

    async def finished(self, job: Job) -> None:
        """Tells the requester that the job failed or was cancelled (job.error says why), not counted."""

    async def posted_result(self, job: Job) -> int | None:
        """After a crash while delivering: the id of the message that already shows the image, if any."""
        ...

    async def awaiting_approval(self, job: Job) -> int | None:
        """Asks the moderators (Approve / Reject) and tells the requester; returns the request's message id."""
        ...

    async def approval_decided(self, job: Job, decision: str, moderator_id: int | None) -> None:
        """Marks the moderators' request as approved, rejected or expired."""


class _Slot:
    """One API slot, given back exactly once."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


class DeliveryError(Exception):
    """The image could not be posted; raised by JobEvents.deliver."""


@dataclass(frozen=True)
class JobLimits:
    max_concurrent: int = 4
    max_per_user: int = 2
    max_queue: int = 100
    shutdown_grace: float = 30.0
    approval_sweep_interval: float = 15.0


class JobService:
    def __init__(
        self,
        *,
        store: Store,
        quota: QuotaService,
        client: DoubaoClient,
        session: aiohttp.ClientSession,
        extras: ApiExtras,
        limits: JobLimits,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._quota = quota
        self._client = client
        self._session = session
        self._extras = extras
        self.limits = limits
        self._clock = clock
        self._events: JobEvents | None = None
        self._queue = FairQueue()
        self._jobs: dict[str, Job] = {}  # queued and running, in this process
        self._pending: dict[str, Job] = {}  # waiting for a moderator
        self._announced: dict[str, int | None] = {}
        self._admission = asyncio.Lock()
        self._workers: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(limits.max_concurrent)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._accepting = False
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def events(self) -> JobEvents:
        if self._events is None:
            raise RuntimeError("JobService.start() has not been called")
        return self._events

    # -- admission ------------------------------------------------------------------------------

    def check_admission(self, user_id: int) -> None:
        """Raises the reason a new job from this user would be refused now (said before anything is spent)."""
        if not self._accepting:
            raise UserFacingError("error.restarting")
        if len(self._queue) >= self.limits.max_queue:
            raise UserFacingError("error.queue_full")
        active = sum(1 for job in (*self._jobs.values(), *self._pending.values()) if job.user_id == user_id)
        if active >= self.limits.max_per_user:
            raise UserFacingError("error.too_many_jobs", limit=self.limits.max_per_user)

    async def submit(self, request: JobRequest) -> Job:
        """Reserves the quota with a new job row and queues it; raises a UserFacingError when refused."""
        async with self._admission:
            self.check_admission(request.user_id)
            job = Job(
                id=uuid.uuid4().hex,
                command=request.command,
                params=with_seed(request.params),
                guild_id=request.guild_id,
                channel_id=request.channel_id,
                user_id=request.user_id,
                language=request.language,
                reply=request.reply,
            )
            if request.needs_approval:
                job.state = JobState.PENDING
                job.approval_expires_at = self._clock() + request.approval_timeout
            window = self._quota.window()
            limit = request.quota_limit
            if limit is None:
                found = await self._quota.limit_for(
                    guild_id=job.guild_id, user_id=job.user_id, role_ids=request.role_ids
                )
                limit = found.total
            job.quota_limit = limit
            if not await self._store.create_job(job.to_row(), window=window.key, limit=limit):
                raise exhausted(limit, window.resets_at)
            if job.state is JobState.PENDING:
                self._pending[job.id] = job
            else:
                await self._enqueue(job)
        log.info("job %s %s: %s by user %s in guild %s", job.id, job.state, job.command, job.user_id, job.guild_id)
        if job.state is JobState.PENDING:
            await self._ask_moderators(job)
        return job

    # -- approval -------------------------------------------------------------------------------

    async def _ask_moderators(self, job: Job) -> None:
        try:
            message_id = await self.events.awaiting_approval(job)
        except Exception:
            log.exception("could not ask the moderators about job %s", job.id)
            message_id = None
        if message_id is None:
            # Nobody can approve it: do not let it wait for nothing.
            await self._settle_pending(job, "error.approval_unavailable", decision="expired")
            return
        job.approval_message_id = message_id
        await self._store.update_job(job.id, approval_message_id=message_id)
        self.events.progress(job, None)

    async def approve(self, job_id: str, moderator_id: int) -> Job | None:
        """Queues a pending job; None when it is not pending any more (decided, expired or unknown), or when the
        bot is shutting down (the job then stays pending, and pending jobs survive restarts)."""
        job = self._pending.get(job_id)
        if job is None or not self._accepting:
            return None
        if job.approval_expires_at is not None and job.approval_expires_at <= self._clock():
            return None  # the sweeper will refund it
        self._pending.pop(job_id, None)
        if not await self._store.update_job(job_id, expect=[JobState.PENDING], state=JobState.QUEUED):
            return None
        job.state = JobState.QUEUED
        log.info("job %s approved by %s", job.id, moderator_id)
        await self._enqueue(job)
        await self._decided(job, "approved", moderator_id)
        return job

    async def reject(self, job_id: str, moderator_id: int, reason: str | None) -> Job | None:
        """Refunds a pending job and tells its requester why; None when it is not pending any more."""
        job = self._pending.get(job_id)
        if job is None:
            return None
        job.note = reason
        if not await self._settle_pending(job, "approval.rejected", decision="rejected", moderator_id=moderator_id):
            return None
        return job

    async def expire_pending(self) -> int:
        """Refunds the pending jobs whose approval time ran out; returns how many."""
        expired = await self._store.expired_pending_jobs(_format_time(self._clock()))
        count = 0
        for row in expired:
            job = self._pending.get(row.id) or Job.from_row(row)
            count += await self._settle_pending(job, "approval.expired", decision="expired")
        return count

    async def _settle_pending(self, job: Job, error: str, *, decision: str, moderator_id: int | None = None) -> bool:
        self._pending.pop(job.id, None)
        # Only while still pending: a moderator may have approved it since the sweeper listed it.
        if not await self._finish(job, JobState.FAILED, error=error, note=job.note, expect=[JobState.PENDING]):
            return False
        log.info("pending job %s %s", job.id, decision)
        await self._decided(job, decision, moderator_id)
        return True

    async def _decided(self, job: Job, decision: str, moderator_id: int | None) -> None:
        if job.approval_message_id is None:
            return
        try:
            await self.events.approval_decided(job, decision, moderator_id)
        except Exception:
            log.warning("could not mark the approval request of job %s", job.id, exc_info=True)

    async def _sweep_pending(self) -> None:
        while True:
            await asyncio.sleep(self.limits.approval_sweep_interval)
            try:
                await self.expire_pending()
            except Exception:
                log.exception("sweeping expired approval requests failed")

    async def _enqueue(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._idle.clear()
        await self._queue.put(job.user_id, job.id)
        self._announce_positions()

    def _announce_positions(self) -> None:
        """Tells each queued job its place: exactly near the front, in steps of ten further back (a long queue
        would otherwise edit every status message each time a job starts)."""
        for index, job_id in enumerate(self._queue.order(), start=1):
            announced = self._announced.get(job_id)
            if announced != index and (announced is None or index <= ANNOUNCE_EXACTLY or index % 10 == 0):
                self._announced[job_id] = index
                self.events.progress(self._jobs[job_id], index)

    async def cancel(self, job_id: str) -> bool:
        """Cancels a queued job and refunds it; False when it is not queued any more."""
        if not self._queue.remove(job_id):
            return False
        job = self._jobs.pop(job_id)
        await self._finish(job, JobState.CANCELLED, error="status.cancelled")
        self._announce_positions()
        self._update_idle()
        return True

    # -- running --------------------------------------------------------------------------------

    async def start(self, events: JobEvents) -> None:
        """Settles what a previous run left unfinished, then starts the workers and takes new jobs."""
        self._events = events
        await self._recover()
        self._slots = asyncio.Semaphore(self.limits.max_concurrent)
        self._workers = [
            asyncio.create_task(self._dispatch(), name="job-dispatcher"),
            asyncio.create_task(self._sweep_pending(), name="approval-sweeper"),
        ]
        self._accepting = True

    async def _dispatch(self) -> None:
        """Starts the next job in turn whenever an API slot is free (at most `max_concurrent` calls to 302.ai)."""
        while True:
            await self._slots.acquire()
            slot = _Slot(self._slots)
            try:
                job_id = await self._queue.get()
            except BaseException:
                slot.release()
                raise
            job = self._jobs.get(job_id)
            if job is None:
                slot.release()
                continue
            self._announce_positions()
            task = asyncio.create_task(self._run(job, slot), name=f"job-{job.id}")
            self._running[job.id] = task
            task.add_done_callback(lambda task, job_id=job.id: self._ran(job_id, task))

    def _ran(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._jobs.pop(job_id, None)
        self._announced.pop(job_id, None)
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("job %s ended with an unexpected error", job_id, exc_info=error)
        self._update_idle()

    async def _run(self, job: Job, slot: _Slot) -> None:
        """Generates holding an API slot, which is given back before the image is posted: posting (and Discord's
        rate limits) never keeps the next job from starting."""
        try:
            try:
                if not await self._store.update_job(job.id, expect=[JobState.QUEUED], state=JobState.RUNNING):
                    return
                job.state = JobState.RUNNING
                self.events.progress(job, None)
                image = await self._generate(job)
            finally:
                slot.release()
            if not await self._store.update_job(job.id, expect=[JobState.RUNNING], state=JobState.DELIVERING):
                log.warning("job %s was settled while it ran; not posting it", job.id)
                return
            job.state = JobState.DELIVERING
            message_id = await self.events.deliver(job, image, await self._quota_after(job))
        except asyncio.CancelledError:
            await asyncio.shield(self._finish(job, JobState.FAILED, error="error.restarting"))
            raise
        except Exception as exc:
            await asyncio.shield(self._finish(job, JobState.FAILED, error=_error_key(exc)))
            return
        await asyncio.shield(self._finish(job, JobState.DONE, result_message_id=message_id))

    async def _quota_after(self, job: Job) -> QuotaStatus:
        """What the requester has left, this job counted, with the limit they had when they asked."""
        if job.quota_limit is None:  # a job stored before limits travelled with jobs
            return await self._quota.status(guild_id=job.guild_id, user_id=job.user_id)
        window = self._quota.window()
        used = await self._store.used_quota(guild_id=job.guild_id, user_id=job.user_id, window=window.key)
        return QuotaStatus(limit=job.quota_limit, used=used, resets_at=window.resets_at)

    async def _generate(self, job: Job) -> DownloadedImage:
        started = time.monotonic()
        generated = await self._client.generate(ENDPOINTS[job.command], job.params.payload(self._extras))
        log.info("job %s generated in %.1fs", job.id, time.monotonic() - started)
        image = await self._fetch(generated)
        return await fit_to_limit_async(image, job.reply.upload_limit)

    async def _fetch(self, generated: GeneratedImage) -> DownloadedImage:
        if generated.data is not None:
            return from_bytes(generated.data)
        assert generated.url is not None
        return await download_image(self._session, generated.url, max_bytes=MAX_DOWNLOAD_BYTES)

    async def _finish(
        self,
        job: Job,
        state: JobState,
        *,
        error: str | None = None,
        note: str | None = None,
        result_message_id: int | None = None,
        expect: Iterable[str] = ACTIVE_STATES,
    ) -> bool:
        """Settles the job once; the requester is told about any ending but a posted image."""
        settled = await self._store.finish_job(
            job.id, state, error=error, note=note, result_message_id=result_message_id, expect=expect
        )
        log.info("job %s %s%s (settled now: %s)", job.id, state, f" ({error})" if error else "", settled)
        if not settled:
            return False
        job.state, job.error, job.note, job.result_message_id = state, error, note, result_message_id
        if isinstance(job.params, CharacterParams):
            await self._forget_reference(job)
        if state is not JobState.DONE:
            await self._tell(job)
        return True

    async def _forget_reference(self, job: Job) -> None:
        """The reference of a /character job (a member's photo, often) is not kept beyond the job."""
        await self._store.update_job(job.id, params=params_to_dict(replace(job.params, reference_url="")))

    async def _tell(self, job: Job) -> None:
        try:
            await self.events.finished(job)
        except Exception:
            log.warning("could not tell user %s about job %s", job.user_id, job.id, exc_info=True)

    # -- restart and shutdown -------------------------------------------------------------------

    async def _recover(self) -> None:
        now = self._clock()
        for row in await self._store.active_jobs():
            job = Job.from_row(row)
            if job.state is JobState.PENDING and job.approval_message_id is None:
                # The bot stopped before the moderators were asked: nobody can approve it.
                await self._finish(job, JobState.FAILED, error="error.approval_unavailable")
            elif job.state is JobState.PENDING:
                self._pending[job.id] = job  # still waiting for a moderator; the sweeper expires it in time
            elif job.state is JobState.QUEUED and job.reply.token_usable(now):
                log.info("job %s re-queued after a restart", job.id)
                await self._enqueue(job)
            elif job.state is JobState.DELIVERING and (message_id := await self._posted(job)) is not None:
                log.info("job %s had been posted before a restart", job.id)
                await self._finish(job, JobState.DONE, result_message_id=message_id)
            else:
                log.info("job %s interrupted by a restart while %s", job.id, job.state)
                await self._finish(job, JobState.FAILED, error="error.interrupted")

    async def _posted(self, job: Job) -> int | None:
        try:
            return await self.events.posted_result(job)
        except Exception:
            log.warning("could not check whether job %s was posted", job.id, exc_info=True)
            return None

    async def shutdown(self) -> None:
        """Stops taking jobs, lets running ones finish within the grace period, then settles the rest."""
        if not self._accepting and not self._workers:
            return
        self._accepting = False
        for job_id in self._queue.drain():
            job = self._jobs.pop(job_id)
            await self._finish(job, JobState.FAILED, error="error.restarting")
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []
        running = set(self._running.values())
        if running:
            log.info("waiting up to %ss for %d running jobs", self.limits.shutdown_grace, len(running))
            await asyncio.wait(running, timeout=self.limits.shutdown_grace)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        for job_id in self._queue.drain():  # anything queued meanwhile is settled too
            job = self._jobs.pop(job_id)
            await self._finish(job, JobState.FAILED, error="error.restarting")
        self._update_idle()

    def _update_idle(self) -> None:
        if not self._jobs:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Returns once no job is queued or running (for tests and the benchmark)."""
        await self._idle.wait()

    async def load(self, job_id: str) -> Job | None:
        """A job from this process or the database, whatever its state."""
        row = await self._store.get_job(job_id)
        return Job.from_row(row) if row else None

    async def forget_user(self, user_id: int, *, guild_id: int | None) -> int:
        """Deletes a member's finished jobs and past usage (today's stays, so the quota is still enforced)."""
        return await self._store.forget_user(user_id, guild_id=guild_id, keep_window=self._quota.window().key)

    async def recent(self, *, guild_id: int, user_id: int, limit: int = 10) -> list[Job]:
        rows = await self._store.recent_jobs(guild_id=guild_id, user_id=user_id, limit=limit)
        return [Job.from_row(row) for row in rows]


def rerolled(job: Job) -> Params:
    """The same request with a new seed."""
    return replace(reusable_params(job), seed=-1)


def reusable_params(job: Job) -> Params:
    """A finished job's parameters for a new job; a /character reference is not kept, so it cannot be reused."""
    if isinstance(job.params, CharacterParams) and not job.params.reference_url:
        raise UserFacingError("error.reference_not_kept")
    return job.params


def _error_key(exc: BaseException) -> str:
    if isinstance(exc, ContentRejected):
        return "error.content_rejected"
    if isinstance(exc, RateLimited | ServiceUnavailable):
        return "error.service_busy"
    if isinstance(exc, AccountError):
        return "error.bot_misconfigured"
    if isinstance(exc, DoubaoError):
        return "error.bad_response"
    if isinstance(exc, ImageDownloadError):
        return "error.download_failed"
    if isinstance(exc, DeliveryError):
        return "error.delivery_failed"
    log.error("unexpected failure in a job", exc_info=exc)
    return "error.unexpected"
