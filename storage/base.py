"""The storage interface the rest of the bot sees."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

ACTIVE_STATES = ("pending", "queued", "running", "delivering")
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


@dataclass(frozen=True)
class MemberRecord:
    """What a request needs to know about a member in a guild, read in one go."""

    guild_settings: dict[str, Any] | None
    banned: bool
    personal_limit: int | None
    granted: int  # in the window asked about
    used: int  # reserved or committed in that window
    last_request_at: str | None  # ISO 8601


class Store(Protocol):
    """Durable state: jobs, the quota ledger tied to them, and small key/value metadata.

    Every job has one ledger row: reserved in the same transaction that creates the job, then settled
    exactly once with the job's final state, committed when its image was posted, refunded otherwise.
    Reserved and committed rows count against the user's limit in their window.
    """

    async def create_job(self, job: JobRow, *, window: str, limit: int) -> bool:
        """Inserts the job and reserves its quota atomically; False (and nothing stored) when exhausted."""
        ...

    async def update_job(self, job_id: str, *, expect: Iterable[str] | None = None, **fields: Any) -> bool:
        """Sets fields (state, status_message_id, ...) if the job is in one of the `expect` states."""
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
    ) -> bool:
        """Moves a job in one of the `expect` states (by default any active one) to a final state and settles
        its quota (committed only for 'done').

        Returns False when the job was not in those states: a job is charged or refunded at most once.
        """
        ...

    async def get_job(self, job_id: str) -> JobRow | None: ...

    async def active_jobs(self) -> list[JobRow]:
        """Jobs queued, running or delivering, oldest first."""
        ...

    async def recent_jobs(self, *, guild_id: int, user_id: int, limit: int) -> list[JobRow]:
        """The user's newest jobs in the guild, newest first."""
        ...

    async def last_request_at(self, *, guild_id: int, user_id: int) -> str | None:
        """When the user last asked for a generation in the guild (ISO 8601), from the usage rows, which
        /forget-me keeps for the current day."""
        ...

    async def member_record(self, *, guild_id: int, user_id: int, window: str) -> MemberRecord:
        """The guild's settings and the member's ban, limit, grants, usage in `window` and last request."""
        ...

    async def used_quota(self, *, guild_id: int, user_id: int, window: str) -> int:
        """Generations reserved or committed by the user in `window`."""
        ...

    async def ledger_totals(self) -> dict[str, int]:
        """How many ledger rows are reserved, committed and refunded."""
        ...

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        ...

    async def expired_pending_jobs(self, now: str) -> list[JobRow]:
        """Jobs waiting for a moderator whose approval_expires_at is before `now` (ISO 8601)."""
        ...

    # -- server policy --------------------------------------------------------------------------

    async def get_guild_settings(self, guild_id: int) -> dict[str, Any] | None: ...

    async def save_guild_settings(self, guild_id: int, settings: dict[str, Any]) -> None: ...

    async def get_user_limit(self, guild_id: int, user_id: int) -> int | None: ...

    async def set_user_limit(self, guild_id: int, user_id: int, limit: int | None) -> None:
        """Sets (or, with None, removes) a member's personal daily limit."""
        ...

    async def add_quota_grant(self, *, guild_id: int, user_id: int, window: str, amount: int, granted_by: int) -> None:
        """One-off extra generations for the user in `window`."""
        ...

    async def granted_quota(self, *, guild_id: int, user_id: int, window: str) -> int: ...

    async def ban(self, *, guild_id: int, user_id: int, reason: str | None, banned_by: int) -> None: ...

    async def unban(self, *, guild_id: int, user_id: int) -> bool: ...

    async def get_ban(self, guild_id: int, user_id: int) -> BanRow | None: ...

    async def forget_user(self, user_id: int, *, guild_id: int | None, keep_window: str) -> int:
        """Deletes the user's finished jobs and their usage rows outside `keep_window` (in one guild, or all
        with None); today's usage stays so the quota is still enforced. Returns how many jobs were deleted."""
        ...

    # -- metadata -------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    async def close(self) -> None: ...
