"""Jobs from request to posted image: admission, the shared queue, the API call, delivery, and settling.

This is the one place that decides what a job costs: its quota is reserved with the job row, committed
when the image was posted and refunded on any other ending, exactly once (the store enforces it).

The queue is the store's (`Store.claim_job`), so several processes can share one: each claims the next job in
the fair order when it has an API slot free, and `Store.publish("queue")` wakes them when something changed.
With a store shared by several processes, jobs are leased: a running or delivering one to the process doing it, a
queued one to the process telling its requester their place. A process that dies loses its leases and another
takes its jobs over (`take_over_expired`). A store of one process is recovered when it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import replace
from datetime import timedelta

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
from core.images import DownloadedImage, ImageDownloadError, download_image, fit_to_limit_async, from_bytes
from core.job import (
    DeliveryError,
    Job,
    JobEvents,
    JobLimits,
    JobRequest,
    JobState,
    format_time,
)
from core.metrics import Metrics
from core.params import CharacterParams, Command, params_to_dict, with_seed
from core.quota import Clock, QuotaService, QuotaStatus, exhausted, utc_now
from storage.base import ACTIVE_STATES, LEASED_STATES, Created, MemberRecord, Store

log = logging.getLogger(__name__)

ENDPOINTS = {Command.DRAW: Endpoint.DRAW, Command.CHARACTER: Endpoint.CHARACTER}
MAX_DOWNLOAD_BYTES = 30 * 1024 * 1024
ANNOUNCE_EXACTLY = 10  # queue positions up to this are announced at each step
ANNOUNCE_BOUNDS = (20, 50, 100, 200, 500, 1000, 2000, 5000)  # further back, when a position crosses one of these
ANNOUNCE_BATCH = 25  # positions announced per turn of the event loop
ANNOUNCE_INTERVAL = 0.25  # seconds between two looks at the queue's order (it is only for the status lines)
QUEUE = "queue"  # the store topic published when the queue or the API slots change


class _Slot:
    """One API slot of this process, given back exactly once."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self._semaphore: asyncio.Semaphore | None = semaphore

    def release(self) -> None:
        if self._semaphore is not None:
            self._semaphore.release()
            self._semaphore = None


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
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._quota = quota
        self._client = client
        self._session = session
        self._extras = extras
        self.limits = limits
        self._clock = clock
        self._metrics = metrics or Metrics()
        self.owner = uuid.uuid4().hex  # this process, as the holder of leases
        self._events: JobEvents | None = None
        self._queued_here: dict[str, Job] = {}  # queued jobs this process tells their place in the queue
        self._announced: dict[str, int] = {}
        self._running: dict[str, asyncio.Task[None]] = {}  # running or delivering in this process
        self._slots = asyncio.Semaphore(min(limits.max_concurrent, limits.max_concurrent_here or limits.max_concurrent))
        self._queue_changed = asyncio.Event()  # wakes the dispatcher
        self._positions_changed = asyncio.Event()  # wakes the announcer
        self._tasks: list[asyncio.Task[None]] = []
        self._lease_keeper: asyncio.Task[None] | None = None
        self._lease_round = asyncio.Lock()  # a renewal and take-over round; shutdown's hand-over waits for it
        self._accepting = False
        self._idle = asyncio.Event()
        self._idle.set()
        store.listen(self._on_notice)

    @property
    def events(self) -> JobEvents:
        if self._events is None:
            raise RuntimeError("JobService.start() has not been called")
        return self._events

    # -- admission ------------------------------------------------------------------------------

    def check_admission(self, record: MemberRecord) -> None:
        """Raises the reason a new job from this member would be refused now (said before anything is spent);
        `Store.create_job` checks the same limits again, atomically."""
        if not self._accepting:
            raise UserFacingError("error.restarting")
        if record.queued_jobs >= self.limits.max_queue:
            raise self._refusal(Created.QUEUE_FULL)
        if record.active_jobs >= self.limits.max_per_user:
            raise self._refusal(Created.TOO_MANY_JOBS)

    def _refusal(self, limit: Created) -> UserFacingError:
        """What the member is told when the queue or their number of jobs is at its limit."""
        if limit is Created.QUEUE_FULL:
            return UserFacingError("error.queue_full")
        return UserFacingError("error.too_many_jobs", limit=self.limits.max_per_user)

    async def submit(self, request: JobRequest) -> Job:
        """Reserves the quota with a new job row and queues it; raises a UserFacingError when refused."""
        if not self._accepting:
            raise UserFacingError("error.restarting")
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
        if request.quota_limit is None:
            found = await self._quota.limit_for(guild_id=job.guild_id, user_id=job.user_id, role_ids=request.role_ids)
            job.quota_limit = found.total
        else:
            job.quota_limit = request.quota_limit
        row = job.to_row()
        if job.state is JobState.QUEUED and (lease := self._queue_lease()):
            row = replace(row, lease_owner=lease["owner"], lease_expires_at=lease["lease_until"])
        created = await self._store.create_job(
            row,
            window=window.key,
            limit=job.quota_limit,
            max_per_user=self.limits.max_per_user,
            max_queue=self.limits.max_queue,
        )
        if created is Created.QUOTA_EXHAUSTED:
            raise exhausted(job.quota_limit, window.resets_at)
        if not created:
            raise self._refusal(created)
        log.info("job %s %s: %s by user %s in guild %s", job.id, job.state, job.command, job.user_id, job.guild_id)
        if job.state is JobState.PENDING:
            await self._ask_moderators(job)
        else:
            await self._queued(job)
        return job

    async def _queued(self, job: Job) -> None:
        self._keep_queued(job)
        await self._store.publish(QUEUE)

    def _on_notice(self, topic: str) -> None:
        if topic == QUEUE:
            self._queue_changed.set()
            self._positions_changed.set()

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
        # A moderator may have decided already (the request is clickable before its id comes back): then the
        # status tells the decision, not "waiting for approval".
        if await self._store.update_job(job.id, expect=[JobState.PENDING], approval_message_id=message_id):
            self.events.progress(job, None)

    async def approve(self, job_id: str, moderator_id: int, *, request_message_id: int | None = None) -> Job | None:
        """Queues a pending job; None when it is not pending any more (decided, expired or unknown), or when the
        bot is shutting down (the job then stays pending, and pending jobs survive restarts).

        `request_message_id` is the clicked request's message, for a click that came before its id was stored."""
        job = await self._pending(job_id, request_message_id)
        if job is None or not self._accepting:
            return None
        if job.approval_expires_at is not None and job.approval_expires_at <= self._clock():
            return None  # the sweeper will refund it
        if not await self._store.queue_job(job_id, expect=[JobState.PENDING], **self._queue_lease()):
            return None
        job.state = JobState.QUEUED
        log.info("job %s approved by %s", job.id, moderator_id)
        await self._queued(job)
        await self._decided(job, "approved", moderator_id)
        return job

    async def reject(
        self, job_id: str, moderator_id: int, reason: str | None, *, request_message_id: int | None = None
    ) -> Job | None:
        """Refunds a pending job and tells its requester why; None when it is not pending any more."""
        job = await self._pending(job_id, request_message_id)
        if job is None:
            return None
        job.note = reason
        if not await self._settle_pending(job, "approval.rejected", decision="rejected", moderator_id=moderator_id):
            return None
        return job

    async def _pending(self, job_id: str, request_message_id: int | None) -> Job | None:
        job = await self.load(job_id)
        if job is None or job.state is not JobState.PENDING:
            return None
        if job.approval_message_id is None:
            job.approval_message_id = request_message_id
        return job

    async def expire_pending(self) -> int:
        """Refunds the pending jobs whose approval time ran out; returns how many."""
        expired = await self._store.expired_pending_jobs(format_time(self._clock()))
        count = 0
        for row in expired:
            count += await self._settle_pending(Job.from_row(row), "approval.expired", decision="expired")
        return count

    async def _settle_pending(self, job: Job, error: str, *, decision: str, moderator_id: int | None = None) -> bool:
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

    # -- the queue ------------------------------------------------------------------------------

    async def cancel(self, job_id: str) -> bool:
        """Cancels a queued job and refunds it; False when it is not queued any more."""
        job = self._queued_here.get(job_id) or await self.load(job_id)
        if job is None or not await self._finish(job, JobState.CANCELLED, error="status.cancelled", expect=["queued"]):
            return False
        self._forget_queued(job_id)
        await self._store.publish(QUEUE)
        return True

    def _keep_queued(self, job: Job) -> None:
        """This process tells the queued `job` its place from now on (`_forget_queued` undoes it)."""
        self._queued_here[job.id] = job
        self._idle.clear()

    def _forget_queued(self, job_id: str) -> None:
        self._queued_here.pop(job_id, None)
        self._announced.pop(job_id, None)
        self._update_idle()

    async def _announce_positions(self) -> None:
        """Tells each job queued from this process its place: at each step near the front, further back only when it
        crosses one of ANNOUNCE_BOUNDS (a long queue would otherwise edit every status message whenever a job starts
        or a newcomer is served ahead), and looking at the queue at most every ANNOUNCE_INTERVAL."""
        while True:
            await self._positions_changed.wait()
            await asyncio.sleep(ANNOUNCE_INTERVAL)  # changes coming together make one look
            self._positions_changed.clear()
            if not self._queued_here:
                continue
            try:
                order = await self._store.queued_job_ids()
            except Exception:
                log.exception("could not read the queue")
                continue
            queued = set(order)
            for job_id in [job_id for job_id in self._queued_here if job_id not in queued]:
                if job_id not in self._running:  # taken by another process, or settled
                    self.events.stop_progress(self._queued_here[job_id])
                    self._forget_queued(job_id)
            announcements = 0
            for index, job_id in enumerate(order, start=1):
                job = self._queued_here.get(job_id)
                announced = self._announced.get(job_id)
                if job is None or announced == index:
                    continue
                if announced is None or _bracket(index) != _bracket(announced):
                    self._announced[job_id] = index
                    self.events.progress(job, index)
                    announcements += 1
                    if announcements % ANNOUNCE_BATCH == 0:
                        await asyncio.sleep(0)  # a burst of newcomers must not hold the event loop

    # -- running --------------------------------------------------------------------------------

    async def start(self, events: JobEvents) -> None:
        """Settles what a previous run left unfinished (one process), then starts the workers and takes jobs."""
        self._events = events
        if not self._store.multi_process:
            await self._recover()
        self._tasks = [
            asyncio.create_task(self._dispatch(), name="job-dispatcher"),
            asyncio.create_task(self._announce_positions(), name="queue-positions"),
            asyncio.create_task(self._sweep_pending(), name="approval-sweeper"),
        ]
        if self._store.multi_process:
            self._lease_keeper = asyncio.create_task(self._keep_leases(), name="job-leases")
        self._accepting = True
        self._queue_changed.set()
        self._positions_changed.set()

    async def _dispatch(self) -> None:
        """Starts the next job in turn whenever an API slot is free here and in the whole bot."""
        while True:
            await self._slots.acquire()
            slot = _Slot(self._slots)
            try:
                job = await self._claim()
            except BaseException:
                slot.release()
                raise
            task = asyncio.create_task(self._run(job, slot), name=f"job-{job.id}")
            self._running[job.id] = task
            task.add_done_callback(lambda task, job_id=job.id: self._ran(job_id, task))
            await self._store.publish(QUEUE)  # positions moved

    async def _claim(self) -> Job:
        while True:
            self._queue_changed.clear()
            try:
                row = await self._store.claim_job(
                    owner=self.owner, lease_until=self._lease_until(), max_running=self.limits.max_concurrent
                )
            except Exception:
                log.exception("could not claim a job from the queue")
                row = None
            if row is not None:
                job = self._queued_here.pop(row.id, None) or Job.from_row(row)
                self._announced.pop(row.id, None)
                job.state = JobState.RUNNING
                self._idle.clear()
                return job
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation (and hang shutdown).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.limits.queue_poll_interval):
                    await self._queue_changed.wait()

    def _lease_until(self) -> str:
        return format_time(self._clock() + timedelta(seconds=self.limits.lease_seconds))

    def _queue_lease(self) -> dict[str, str]:
        """The lease of a job this process queues: with several processes, another one tells the requester their
        place if this one stops (`take_over_expired`); with one, nobody else could."""
        if not self._store.multi_process:
            return {}
        return {"owner": self.owner, "lease_until": self._lease_until()}

    def _ran(self, job_id: str, task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, Exception):
            log.error("job %s ended with an unexpected error", job_id, exc_info=error)
        self._update_idle()

    async def _run(self, job: Job, slot: _Slot) -> None:
        """Generates holding an API slot, which is given back once the job has left 'running': posting (and
        Discord's rate limits) never keeps the next job from starting."""
        try:
            self.events.progress(job, None)
            image = await self._generate(job)
            delivering = await self._store.update_job(
                job.id, expect=[JobState.RUNNING], held_by=self.owner, state=JobState.DELIVERING
            )
        except BaseException as exc:
            await asyncio.shield(self._failed(job, exc))
            raise
        finally:
            slot.release()
            await asyncio.shield(self._store.publish(QUEUE))  # an API slot of the whole bot is free
        if not delivering:
            log.warning("job %s was settled or taken over while it ran; not posting it", job.id)
            return
        job.state = JobState.DELIVERING
        try:
            message_id = await self.events.deliver(job, image, await self._quota_after(job))
        except BaseException as exc:
            await asyncio.shield(self._failed(job, exc))
            raise
        await asyncio.shield(self._finish(job, JobState.DONE, result_message_id=message_id, held_by=self.owner))

    async def _failed(self, job: Job, exc: BaseException) -> None:
        error = "error.restarting" if isinstance(exc, asyncio.CancelledError) else _error_key(exc)
        await self._finish(job, JobState.FAILED, error=error, held_by=self.owner)

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
        held_by: str | None = None,
    ) -> bool:
        """Settles the job once; the requester is told about any ending but a posted image."""
        settled = await self._store.finish_job(
            job.id, state, error=error, note=note, result_message_id=result_message_id, expect=expect, held_by=held_by
        )
        log.info("job %s %s%s (settled now: %s)", job.id, state, f" ({error})" if error else "", settled)
        if not settled:
            return False
        job.state, job.outcome_key, job.note, job.result_message_id = state, error, note, result_message_id
        if isinstance(job.params, CharacterParams):
            await self._forget_reference(job)
        if state is not JobState.DONE:
            self._metrics.refunded(error)
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

    # -- background upkeep ----------------------------------------------------------------------

    async def _sweep_pending(self) -> None:
        while True:
            await asyncio.sleep(self.limits.approval_sweep_interval)
            try:
                await self.expire_pending()
            except Exception:
                log.exception("sweeping expired approval requests failed")

    async def _keep_leases(self) -> None:
        """Renews this process's leases and, while it takes jobs, takes over those of processes whose leases ran
        out."""
        while True:
            await asyncio.sleep(self.limits.lease_seconds / 3)
            async with self._lease_round:
                try:
                    await self._renew_leases()
                    await self.take_over_expired()
                except Exception:
                    log.exception("keeping the job leases failed")

    async def _renew_leases(self) -> None:
        """Renews the leases; shutting down, only those of the jobs still running here (the queued ones are the
        others' now). A queued job this process no longer holds (another took it over while this one was too slow
        to renew) is not announced from here any more: two processes would edit its status in turn."""
        announcing = set(self._queued_here)  # all stored before the renewal starts, so it sees them
        states = LEASED_STATES if self._accepting else (JobState.RUNNING, JobState.DELIVERING)
        held = await self._store.renew_leases(owner=self.owner, lease_until=self._lease_until(), states=states)
        for job_id in announcing.difference(held, self._running):
            job = self._queued_here.get(job_id)
            if job is not None:
                log.info("job %s: its place is told by another process now", job_id)
                self.events.stop_progress(job)
                self._forget_queued(job_id)

    async def take_over_expired(self) -> int:
        """Takes over the jobs of processes that stopped renewing their leases: settles the running or delivering
        ones, and tells the queued ones their place from here on. Returns how many this process took."""
        now = format_time(self._clock())
        taken = 0
        for row in await self._store.expired_leases(now):
            if not self._accepting:
                break  # shutting down: this process takes on nothing more
            lease = self._lease_until()
            if not await self._store.take_over(row.id, state=row.state, owner=self.owner, lease_until=lease, now=now):
                continue  # another process was first, or the job moved on since it was read
            taken += 1
            log.info("job %s taken over from a process that stopped (it was %s)", row.id, row.state)
            job = Job.from_row(row)
            if job.state is JobState.QUEUED:
                self._keep_queued(job)
                self._positions_changed.set()
            else:
                await self._settle_abandoned(job, rerun=True)
        return taken

    async def _settle_abandoned(self, job: Job, *, rerun: bool) -> None:
        """A running or delivering job whose process is gone: run once more while that can still answer the
        requester in time (never after an image may have been posted), done if its image is in the channel,
        else refunded and the requester told."""
        if (
            rerun
            and job.state is JobState.RUNNING
            and job.attempts == 0
            and job.reply.token_usable(self._clock())
            and await self._store.queue_job(job.id, expect=[JobState.RUNNING], **self._queue_lease())
        ):
            log.info("job %s queued again to run once more", job.id)
            job.state, job.attempts = JobState.QUEUED, job.attempts + 1
            await self._queued(job)
        elif job.state is JobState.DELIVERING and (message_id := await self._posted(job)) is not None:
            log.info("job %s had been posted before its process stopped", job.id)
            await self._finish(job, JobState.DONE, result_message_id=message_id)
        else:
            log.info("job %s interrupted while %s", job.id, job.state)
            await self._finish(job, JobState.FAILED, error="error.interrupted")

    # -- restart and shutdown -------------------------------------------------------------------

    async def _recover(self) -> None:
        """One process, starting: everything active is from its previous run."""
        now = self._clock()
        for row in await self._store.active_jobs():
            job = Job.from_row(row)
            if job.state is JobState.PENDING and job.approval_message_id is None:
                # The bot stopped before the moderators were asked: nobody can approve it.
                await self._finish(job, JobState.FAILED, error="error.approval_unavailable")
            elif job.state is JobState.PENDING:
                pass  # still waiting for a moderator; the sweeper expires it in time
            elif job.state is JobState.QUEUED and job.reply.token_usable(now):
                log.info("job %s still queued after a restart", job.id)
                self._keep_queued(job)
            elif job.state is JobState.QUEUED:
                await self._finish(job, JobState.FAILED, error="error.interrupted")
            else:
                await self._settle_abandoned(job, rerun=False)

    async def _posted(self, job: Job) -> int | None:
        try:
            return await self.events.posted_result(job)
        except Exception:
            log.warning("could not check whether job %s was posted", job.id, exc_info=True)
            return None

    async def shutdown(self) -> None:
        """Stops taking jobs, lets running ones finish within the grace period, then settles the rest.

        Queued jobs are refunded when this process is the only one; with several, they stay for the others, who
        take them over at once (`_hand_over`).
        """
        if not self._accepting and not self._tasks and self._lease_keeper is None:
            return
        self._accepting = False
        # The leases are kept while running jobs finish, or another process would take them over meanwhile.
        await _cancel(self._tasks)
        self._tasks = []
        if self._store.multi_process:
            await self._leave_queued_jobs()
        else:
            await self._refund_queued()
        running = set(self._running.values())
        if running:
            log.info("waiting up to %ss for %d running jobs", self.limits.shutdown_grace, len(running))
            await asyncio.wait(running, timeout=self.limits.shutdown_grace)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
        if self._lease_keeper is not None:
            await _cancel([self._lease_keeper])
            self._lease_keeper = None
            await self._hand_over()
        self._queued_here.clear()
        self._update_idle()

    async def _leave_queued_jobs(self) -> None:
        """Several processes: the others tell the queued jobs their places from their next look. A lease round
        under way finishes first, or it could renew (or adopt) queued jobs after the hand-over."""
        async with self._lease_round:
            await self._hand_over(states=[JobState.QUEUED])
        for job in self._queued_here.values():
            self.events.stop_progress(job)  # a status edit still waiting here must not land after the others'
        self._queued_here.clear()
        self._announced.clear()

    async def _hand_over(self, states: Iterable[str] = LEASED_STATES) -> None:
        """Ends this process's leases on its jobs in `states` now (the queued ones it leaves to the others, and at
        the very end any job it could not settle), so that another process takes them over at its next look rather
        than a lease's length later."""
        try:
            handed = await self._store.renew_leases(
                owner=self.owner, lease_until=format_time(self._clock()), states=states
            )
        except Exception:
            log.warning("could not hand the jobs over; the other processes take them when the leases run out")
            return
        if handed:
            log.info("handed %d job(s) over to the other processes", len(handed))

    async def _refund_queued(self) -> None:
        for job_id in await self._store.queued_job_ids():
            job = self._queued_here.get(job_id) or await self.load(job_id)
            if job is not None:
                await self._finish(job, JobState.FAILED, error="error.restarting", expect=[JobState.QUEUED])
            self._forget_queued(job_id)

    def _update_idle(self) -> None:
        if not self._queued_here and not self._running:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Returns once no job queued from this process waits and none runs here (for tests and the benchmark)."""
        await self._idle.wait()

    async def load(self, job_id: str) -> Job | None:
        """A job from the database, whatever its state."""
        row = await self._store.get_job(job_id)
        return Job.from_row(row) if row else None

    async def forget_user(self, user_id: int, *, guild_id: int | None) -> int:
        """Deletes a member's finished jobs and past usage (today's stays, so the quota is still enforced)."""
        return await self._store.forget_user(user_id, guild_id=guild_id, keep_window=self._quota.window().key)

    async def recent(self, *, guild_id: int, user_id: int, limit: int = 10) -> list[Job]:
        rows = await self._store.recent_jobs(guild_id=guild_id, user_id=user_id, limit=limit)
        return [Job.from_row(row) for row in rows]


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _bracket(position: int) -> int:
    """Positions in one bracket are not worth a new status line: each one up to ANNOUNCE_EXACTLY, then up to the
    next of ANNOUNCE_BOUNDS."""
    if position <= ANNOUNCE_EXACTLY:
        return position
    return next((bound for bound in ANNOUNCE_BOUNDS if position <= bound), ANNOUNCE_BOUNDS[-1] + 1)


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
