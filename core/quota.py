"""Per-user, per-guild daily quotas (UTC days): windows, limits and what is left."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from core.errors import QuotaExhausted
from core.policy import GuildPolicy
from storage.base import MemberRecord, Store

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class QuotaWindow:
    key: str  # the UTC date, e.g. "2026-11-21"
    resets_at: datetime

    @classmethod
    def daily(cls, now: datetime) -> QuotaWindow:
        day = now.astimezone(UTC).date()
        return cls(key=day.isoformat(), resets_at=datetime.combine(day + timedelta(days=1), time(), UTC))


@dataclass(frozen=True)
class QuotaLimit:
    """A member's limit for the window and where it comes from (shown by /quota)."""

    base: int
    source: str  # "default", "server", "role" or "user"
    role_id: int | None = None
    granted: int = 0

    @property
    def total(self) -> int:
        return self.base + self.granted


@dataclass(frozen=True)
class QuotaStatus:
    limit: int
    used: int
    resets_at: datetime
    origin: QuotaLimit | None = None

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


class QuotaService:
    """What a member may spend: personal limit, else the highest of their roles', else the server's, else the
    bot's default; plus one-off grants for the day. Reservations are made with the job (core/jobs.py)."""

    def __init__(self, store: Store, *, daily_limit: int, clock: Clock = utc_now) -> None:
        self._store = store
        self._daily_limit = daily_limit
        self._clock = clock

    def window(self) -> QuotaWindow:
        return QuotaWindow.daily(self._clock())

    def limit_from(
        self, policy: GuildPolicy, *, personal: int | None, granted: int, role_ids: frozenset[int]
    ) -> QuotaLimit:
        """The rule itself, on values already read."""
        if personal is not None:
            return QuotaLimit(personal, "user", granted=granted)
        role_limits = [(limit, role) for role, limit in policy.role_limits.items() if role in role_ids]
        if role_limits:
            limit, role = max(role_limits)
            return QuotaLimit(limit, "role", role_id=role, granted=granted)
        if policy.daily_quota is not None:
            return QuotaLimit(policy.daily_quota, "server", granted=granted)
        return QuotaLimit(self._daily_limit, "default", granted=granted)

    def status_from(
        self, record: MemberRecord, policy: GuildPolicy, *, role_ids: frozenset[int] = frozenset()
    ) -> QuotaStatus:
        """The member's quota from one `Store.member_record` read (made for the current window)."""
        limit = self.limit_from(policy, personal=record.personal_limit, granted=record.granted, role_ids=role_ids)
        return QuotaStatus(limit=limit.total, used=record.used, resets_at=self.window().resets_at, origin=limit)

    async def limit_for(self, *, guild_id: int, user_id: int, role_ids: frozenset[int] = frozenset()) -> QuotaLimit:
        record = await self._store.member_record(guild_id=guild_id, user_id=user_id, window=self.window().key)
        policy = GuildPolicy.from_settings(record.guild_settings)
        return self.limit_from(policy, personal=record.personal_limit, granted=record.granted, role_ids=role_ids)

    async def status(self, *, guild_id: int, user_id: int, role_ids: frozenset[int] = frozenset()) -> QuotaStatus:
        record = await self._store.member_record(guild_id=guild_id, user_id=user_id, window=self.window().key)
        return self.status_from(record, GuildPolicy.from_settings(record.guild_settings), role_ids=role_ids)

    # -- what admins change ---------------------------------------------------------------------

    async def set_personal_limit(self, *, guild_id: int, user_id: int, limit: int | None) -> None:
        """Sets (or, with None, removes) a member's personal daily limit, which comes before their roles'."""
        await self._store.set_user_limit(guild_id, user_id, limit)

    async def grant(self, *, guild_id: int, user_id: int, amount: int, granted_by: int) -> None:
        """Extra generations for the member, for the current window only."""
        await self._store.add_quota_grant(
            guild_id=guild_id, user_id=user_id, window=self.window().key, amount=amount, granted_by=granted_by
        )

    async def reset(self, *, guild_id: int, user_id: int, reset_by: int) -> int:
        """Gives the member back what they used in the current window; returns how much that was.

        A grant equal to the window's use: the ledger keeps every charge, and the member starts the day afresh.
        """
        status = await self.status(guild_id=guild_id, user_id=user_id)
        if status.used:
            await self.grant(guild_id=guild_id, user_id=user_id, amount=status.used, granted_by=reset_by)
        return status.used


def exhausted(limit: int, resets_at: datetime) -> QuotaExhausted:
    return QuotaExhausted("error.quota_exhausted", limit=limit, resets=resets_at)
