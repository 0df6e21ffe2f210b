"""Per-user, per-guild daily quotas (UTC days): windows, limits and what is left."""

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
    """What a user may spend. Reservations themselves are made with the job (see core/jobs.py)."""

    def __init__(self, store: Store, *, daily_limit: int, clock: Clock = utc_now) -> None:
        self._store = store
        self._daily_limit = daily_limit
        self._clock = clock

    def window(self) -> QuotaWindow:
        return QuotaWindow.daily(self._clock())

    async def limit_for(self, *, guild_id: int, user_id: int) -> int:
        return self._daily_limit

    async def status(self, *, guild_id: int, user_id: int) -> QuotaStatus:
        window = self.window()
        used = await self._store.used_quota(guild_id=guild_id, user_id=user_id, window=window.key)
        limit = await self.limit_for(guild_id=guild_id, user_id=user_id)
        return QuotaStatus(limit=limit, used=used, resets_at=window.resets_at)

    async def check(self, *, guild_id: int, user_id: int) -> QuotaStatus:
        """Raises QuotaExhausted when nothing is left; a cheap early answer, the reservation still decides."""
        status = await self.status(guild_id=guild_id, user_id=user_id)
        if status.remaining == 0:
            raise exhausted(status.limit, status.resets_at)
        return status


def exhausted(limit: int, resets_at: datetime) -> QuotaExhausted:
    return QuotaExhausted("error.quota_exhausted", limit=limit, resets=resets_at)
