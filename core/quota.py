"""Per-user, per-guild daily quotas (UTC days) on top of the store's ledger."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from core.errors import QuotaExhausted
from storage.base import Store

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
class QuotaStatus:
    limit: int
    used: int
    resets_at: datetime

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)


class QuotaService:
    """Reserves before the API call, commits after posting, refunds on failure: the only code for quotas."""

    def __init__(self, store: Store, *, daily_limit: int, clock: Clock = utc_now) -> None:
        self._store = store
        self._daily_limit = daily_limit
        self._clock = clock

    async def status(self, *, guild_id: int, user_id: int) -> QuotaStatus:
        window = QuotaWindow.daily(self._clock())
        used = await self._store.used_quota(guild_id=guild_id, user_id=user_id, window=window.key)
        return QuotaStatus(limit=self._daily_limit, used=used, resets_at=window.resets_at)

    async def check(self, *, guild_id: int, user_id: int) -> QuotaStatus:
        """Raises QuotaExhausted when nothing is left; a cheap early answer, the reservation still decides."""
        status = await self.status(guild_id=guild_id, user_id=user_id)
        if status.remaining == 0:
            raise self._exhausted(status.resets_at)
        return status

    async def reserve(self, *, job_id: str, guild_id: int, user_id: int) -> QuotaStatus:
        """Reserves one generation or raises QuotaExhausted; returns the status including this reservation."""
        window = QuotaWindow.daily(self._clock())
        reserved = await self._store.reserve_quota(
            job_id=job_id, guild_id=guild_id, user_id=user_id, window=window.key, limit=self._daily_limit
        )
        if not reserved:
            raise self._exhausted(window.resets_at)
        used = await self._store.used_quota(guild_id=guild_id, user_id=user_id, window=window.key)
        return QuotaStatus(limit=self._daily_limit, used=used, resets_at=window.resets_at)

    def _exhausted(self, resets_at: datetime) -> QuotaExhausted:
        return QuotaExhausted("error.quota_exhausted", limit=self._daily_limit, resets=resets_at)

    async def commit(self, job_id: str) -> bool:
        return await self._store.commit_quota(job_id)

    async def refund(self, job_id: str) -> bool:
        return await self._store.refund_quota(job_id)
