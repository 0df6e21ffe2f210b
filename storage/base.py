"""The storage interface the rest of the bot sees. SQLite fills it today; PostgreSQL can later."""

from __future__ import annotations

from typing import Protocol


class Store(Protocol):
    """Durable state: the quota ledger and small key/value metadata.

    The quota ledger has one row per job: reserved when the job is accepted, then settled exactly
    once, committed when the image was posted or refunded on any failure. Reserved and committed
    rows count against the user's limit in their window.
    """

    async def reserve_quota(
        self, *, job_id: str, guild_id: int, user_id: int, window: str, limit: int
    ) -> bool:
        """Atomically reserves one generation if fewer than `limit` are used in `window`.

        Returns False when the quota is exhausted. Reserving the same job id twice reserves once.
        """
        ...

    async def commit_quota(self, job_id: str) -> bool:
        """Marks a reservation as spent; False if it was not reserved (already settled or unknown)."""
        ...

    async def refund_quota(self, job_id: str) -> bool:
        """Gives a reservation back; False if it was not reserved (already settled or unknown)."""
        ...

    async def used_quota(self, *, guild_id: int, user_id: int, window: str) -> int:
        """Generations reserved or committed by the user in `window`."""
        ...

    async def ledger_totals(self) -> dict[str, int]:
        """How many ledger rows are in each state, for checks and the admin."""
        ...

    async def get_meta(self, key: str) -> str | None: ...

    async def set_meta(self, key: str, value: str) -> None: ...

    async def close(self) -> None: ...
