"""Jobs and reservations shared by the store tests and the worker processes they start."""

from __future__ import annotations

from storage.base import JobRow, Store

GUILD, USER, OTHER_USER = 1, 10, 11
DAY = "2026-11-21"


def job(job_id: str, *, user: int = USER, token: str | None = None) -> JobRow:
    return JobRow(
        id=job_id,
        guild_id=GUILD,
        channel_id=5,
        user_id=user,
        command="draw",
        params={"prompt": "a cat", "seed": 7},
        language="en",
        interaction_token=token,
    )


async def reserve(store: Store, job_id: str, *, user: int = USER, window: str = DAY, limit: int = 5) -> bool:
    return bool(await store.create_job(job(job_id, user=user), window=window, limit=limit))
