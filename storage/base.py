"""The storage interface the rest of the bot sees."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol

ACTIVE_STATES = ("pending", "queued", "running", "delivering")
# States a process holds a lease on (several processes): running or delivering, the process doing it; queued, the
# process telling the requester their place in the queue.
LEASED_STATES = ("queued", "running", "delivering")
FINAL_STATES = ("done", "failed", "cancelled")


class StoreUnavailable(Exception):
    """The database could not be reached or refused the connection; the message never shows a password."""


@dataclass(frozen=True)
class JobRow:
    """A job as stored: plain values only, so any backend can fill it."""

    id: str
    guild_id: int
    channel_id: int
    user_id: int
    command: str
    params: dict[str, Any]
    language: str
    state: str = "queued"
    error: str | None = None
    note: str | None = None  # e.g. a moderator's reason for rejecting
    application_id: int | None = None
    interaction_token: str | None = None
    token_expires_at: str | None = None  # ISO 8601, UTC
    status_message_id: int | None = None
    result_message_id: int | None = None
    approval_message_id: int | None = None
    approval_expires_at: str | None = None  # ISO 8601, UTC; for 'pending' jobs
    upload_limit: int = 10 * 1024 * 1024
    quota_limit: int | None = None  # the requester's daily limit when they asked (roles and grants included)
    turn: int | None = None  # place in the fair order while queued (set by the store)
    attempts: int = 0  # times the job was re-run after its process died
    lease_owner: str | None = None  # the process running or delivering it, or, queued, telling its place
    lease_expires_at: str | None = None  # ISO 8601, UTC; another process may take the job over after this
    created_at: str = ""
    updated_at: str = ""
    finished_at: str | None = None

    def __repr__(self) -> str:  # the interaction token stays out of logs
        return f"JobRow(id={self.id!r}, command={self.command!r}, state={self.state!r}, user_id={self.user_id})"


@dataclass(frozen=True)
class BanRow:
    guild_id: int
    user_id: int
    reason: str | None
    banned_by: int
    created_at: str


class Created(StrEnum):
    """What `Store.create_job` did; truthy only when the job was created."""

    CREATED = "created"
    QUOTA_EXHAUSTED = "quota_exhausted"
    TOO_MANY_JOBS = "too_many_jobs"  # the member already has max_per_user active jobs
    QUEUE_FULL = "queue_full"

    def __bool__(self) -> bool:
        return self is Created.CREATED


@dataclass(frozen=True)
class MemberRecord:
    """What a request needs to know about a member in a guild, read in one go."""

    guild_settings: dict[str, Any] | None
    banned: bool
    personal_limit: int | None
    granted: int  # in the window asked about
    used: int  # reserved or committed in that window
    last_request_at: str | None  # ISO 8601
    active_jobs: int = 0  # the member's jobs waiting for approval, queued, running or delivering (any guild)
    queued_jobs: int = 0  # jobs queued for the whole bot


class Store(Protocol):
    """Durable state: jobs, the quota ledger tied to them, the job queue, and small key/value metadata.

    Every job has one ledger row: reserved in the same transaction that creates the job, then settled
    exactly once with the job's final state, committed when its image was posted, refunded otherwise.
    Reserved and committed rows count against the user's limit in their window.

    The queue is the jobs table: queued jobs are served by turn, then arrival. A job queued by a user with no
    other job queued or running gets the current round as its turn; otherwise one past that user's latest turn.
    Claiming a job moves the round up to its turn. So a newcomer waits for at most one job of each user already
    waiting, whichever process claimed what.
    """

    # True when several processes may share this store (then jobs are leased, and a process that dies has its
    # jobs taken over by another); False when one process owns it (it recovers everything when it starts).
    multi_process: ClassVar[bool]

    async def create_job(
        self,
        job: JobRow,
        *,
        window: str,
        limit: int,
        max_per_user: int | None = None,
        max_queue: int | None = None,
    ) -> Created:
        """Inserts the job and reserves its quota atomically, if the quota, the member's active jobs (at most
        `max_per_user`) and, for a queued job, the queue (at most `max_queue` queued) allow; else stores nothing.
        A queued job gets its turn."""
        ...

    async def queue_job(
        self, job_id: str, *, expect: Iterable[str], owner: str | None = None, lease_until: str | None = None
    ) -> bool:
        """Moves a job in one of the `expect` states (pending when approved, running for a re-run) to queued,
        with a new turn (kept if it had one), leased to `owner` (who tells the requester their place) or to
        nobody, and one more attempt when it was running."""
        ...

    async def claim_job(self, *, owner: str, lease_until: str, max_running: int) -> JobRow | None:
        """The next queued job in turn, now running and leased to `owner` until `lease_until`; None when nothing
        is queued or `max_running` jobs are running already (in all processes)."""
        ...

    async def queued_job_ids(self) -> list[str]:
        """Every queued job's id, in the order they will be served."""
        ...

    async def renew_leases(self, *, owner: str, lease_until: str, states: Iterable[str] = LEASED_STATES) -> list[str]:
        """Extends (or, with `lease_until` in the past, ends) the lease of every job in `states` that `owner`
        holds; returns their ids."""
        ...

    async def expired_leases(self, now: str) -> list[JobRow]:
        """Queued, running or delivering jobs whose lease ran out before `now`: their process is gone (or, with
        `lease_until` in the past, handed them over)."""
        ...

    async def take_over(self, job_id: str, *, state: str, owner: str, lease_until: str, now: str) -> bool:
        """Leases a job still in `state` whose lease ran out before `now` to `owner`; False when another process
        was first, or the job has moved on (claimed, settled) since it was seen."""
        ...

    def listen(self, callback: Callable[[str], None]) -> None:
        """Calls `callback(topic)` whenever any process sharing the store `publish`es (this one included)."""
        ...

    async def publish(self, topic: str) -> None:
        """Tells every listening process that something changed (topic "queue": a job was queued, claimed or
        left the queue, or an API slot was freed)."""
        ...

    async def update_job(
        self, job_id: str, *, expect: Iterable[str] | None = None, held_by: str | None = None, **fields: Any
    ) -> bool:
        """Sets fields (state, status_message_id, ...) if the job is in one of the `expect` states and, with
        `held_by`, still leased to that process."""
        ...

    async def finish_job(
        self,
        job_id: str,
        state: str,
        *,
        error: str | None = None,
        note: str | None = None,
        result_message_id: int | None = None,
        expect: Iterable[str] = ACTIVE_STATES,
        held_by: str | None = None,
    ) -> bool:
        """Moves a job in one of the `expect` states (by default any active one) and, with `held_by`, still leased
        to that process, to a final state and settles its quota (committed only for 'done').

        Returns False when the job was not in those states: a job is charged or refunded at most once.
        """
        ...

    async def get_job(self, job_id: str) -> JobRow | None: ...

    async def active_jobs(self) -> list[JobRow]:
        """Jobs pending, queued, running or delivering, oldest first."""
        ...

    async def recent_jobs(self, *, guild_id: int, user_id: int, limit: int) -> list[JobRow]:
        """The user's newest jobs in the guild, newest first."""
        ...

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state (the queue's depth among them), for the metrics."""
        ...

    async def member_record(self, *, guild_id: int, user_id: int, window: str) -> MemberRecord:
        """The guild's settings and the member's ban, limit, grants, usage in `window` and last request."""
        ...

    async def used_quota(self, *, guild_id: int, user_id: int, window: str) -> int:
        """Generations reserved or committed by the user in `window`."""
        ...

    async def expired_pending_jobs(self, now: str) -> list[JobRow]:
        """Jobs waiting for a moderator whose approval_expires_at is before `now` (ISO 8601)."""
        ...

    # -- server policy --------------------------------------------------------------------------

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any] | None: ...

    async def save_guild_settings(self, guild_id: int, settings: dict[str, Any]) -> None: ...

    async def set_user_limit(self, guild_id: int, user_id: int, limit: int | None) -> None:
        """Sets (or, with None, removes) a member's personal daily limit."""
        ...

    async def add_quota_grant(self, *, guild_id: int, user_id: int, window: str, amount: int, granted_by: int) -> None:
        """One-off extra generations for the user in `window`."""
        ...

    async def ban(self, *, guild_id: int, user_id: int, reason: str | None, banned_by: int) -> None: ...

    async def unban(self, *, guild_id: int, user_id: int) -> bool: ...

    async def forget_user(self, user_id: int, *, guild_id: int | None, keep_window: str) -> int:
        """Deletes the user's finished jobs and their usage rows outside `keep_window` (in one guild, or all
        with None); today's usage stays so the quota is still enforced. Returns how many jobs were deleted."""
        ...

    # -- metadata -------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    async def close(self) -> None: ...


class StoreInspection(Protocol):
    """Queries that only the tests (and the benchmark) make, to look at what the bot stored. Both stores implement
    them, in their usual place in the method order; they are kept off `Store` so that the bot's code, typed
    against `Store`, cannot come to depend on them."""

    async def ledger_totals(self) -> dict[str, int]:
        """How many ledger rows are reserved, committed and refunded."""
        ...

    async def last_request_at(self, *, guild_id: int, user_id: int) -> str | None:
        """When the user last asked for a generation in the guild (ISO 8601), from the usage rows, which
        /forget-me keeps for the current day (the bot reads it with `member_record`)."""
        ...

    async def get_user_limit(self, guild_id: int, user_id: int) -> int | None: ...

    async def granted_quota(self, *, guild_id: int, user_id: int, window: str) -> int: ...

    async def get_ban(self, guild_id: int, user_id: int) -> BanRow | None: ...
