"""A job as the rest of the bot sees it: its states, who asked and how to answer them, and the interface
through which the chat side shows it (`JobEvents`). `core/jobs.py` moves jobs through their states."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol, overload

from core.errors import UserFacingError
from core.images import DownloadedImage
from core.params import CharacterParams, Command, Params, params_from_dict, params_to_dict
from core.quota import QuotaStatus
from storage.base import JobRow

# Use the interaction token only while it has this much life left; after that, write to the channel.
TOKEN_SAFETY_MARGIN = timedelta(seconds=30)


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
    # Why it failed or was cancelled, as a catalogue key (error.interrupted, status.cancelled, approval.rejected...);
    # stored in the `error` column.
    outcome_key: str | None = None
    note: str | None = None
    result_message_id: int | None = None
    approval_message_id: int | None = None
    approval_expires_at: datetime | None = None
    quota_limit: int | None = None  # the requester's limit when they asked, shown under the image
    attempts: int = 0  # re-runs after the process running it died
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
                token_expires_at=parse_time(row.token_expires_at),
                status_message_id=row.status_message_id,
                upload_limit=row.upload_limit,
            ),
            state=JobState(row.state),
            outcome_key=row.error,
            note=row.note,
            result_message_id=row.result_message_id,
            approval_message_id=row.approval_message_id,
            approval_expires_at=parse_time(row.approval_expires_at),
            quota_limit=row.quota_limit,
            attempts=row.attempts,
            created_at=parse_time(row.created_at),
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
            error=self.outcome_key,
            note=self.note,
            application_id=self.reply.application_id,
            interaction_token=self.reply.token,
            token_expires_at=expires.isoformat() if expires else None,
            status_message_id=self.reply.status_message_id,
            result_message_id=self.result_message_id,
            approval_message_id=self.approval_message_id,
            approval_expires_at=format_time(self.approval_expires_at),
            upload_limit=self.reply.upload_limit,
            quota_limit=self.quota_limit,
            attempts=self.attempts,
        )


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@overload
def format_time(value: datetime) -> str: ...
@overload
def format_time(value: datetime | None) -> str | None: ...
def format_time(value: datetime | None) -> str | None:
    """Fixed precision, so stored times compare correctly as text."""
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


class JobEvents(Protocol):
    """What the chat side does as a job moves; implemented by the Discord layer."""

    def progress(self, job: Job, position: int | None) -> None:
        """Queued at `position` (1-based), or with None: waiting for a moderator (job.state PENDING) or
        generating. Fire and forget."""

    def stop_progress(self, job: Job) -> None:
        """This process no longer shows the job's progress (another one took it): a status edit still waiting for
        its turn is dropped, so that it cannot land on the message the other process posts."""

    async def deliver(self, job: Job, image: DownloadedImage, quota: QuotaStatus) -> int:
        """Posts the image; returns the message id. Raises DeliveryError when it cannot."""
        ...

    async def finished(self, job: Job) -> None:
        """Tells the requester that the job failed or was cancelled (job.outcome_key says why), not counted."""

    async def posted_result(self, job: Job) -> int | None:
        """After a crash while delivering: the id of the message that already shows the image, if any."""
        ...

    async def awaiting_approval(self, job: Job) -> int | None:
        """Asks the moderators (Approve / Reject) and tells the requester; returns the request's message id."""
        ...

    async def approval_decided(self, job: Job, decision: str, moderator_id: int | None) -> None:
        """Marks the moderators' request as approved, rejected or expired."""


class DeliveryError(Exception):
    """The image could not be posted; raised by JobEvents.deliver."""


@dataclass(frozen=True)
class JobLimits:
    max_concurrent: int = 4  # calls to 302.ai in flight, in all processes together
    max_concurrent_here: int | None = None  # and in this process (None: no cap of its own)
    max_per_user: int = 2
    max_queue: int = 100
    shutdown_grace: float = 30.0
    approval_sweep_interval: float = 15.0
    lease_seconds: float = 60.0  # with several processes: how long a silent process keeps its jobs
    queue_poll_interval: float = 5.0  # a check of the queue even without a notification


def rerolled(job: Job) -> Params:
    """The same request with a new seed."""
    return replace(reusable_params(job), seed=-1)


def reusable_params(job: Job) -> Params:
    """A finished job's parameters for a new job; a /character reference is not kept, so it cannot be reused."""
    if isinstance(job.params, CharacterParams) and not job.params.reference_url:
        raise UserFacingError("error.reference_not_kept")
    return job.params
