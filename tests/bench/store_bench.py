"""The store alone: reserve + commit pairs per second with concurrent writers, and no one over their limit.

The writers share one store, as the bot's coroutines do; users get more attempts than their daily limit
allows, so the limit is contended, and any generation counted beyond it is an overspend.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from storage import open_store
from storage.base import JobRow

WINDOW = "2000-01-01"
GUILD = 1


@dataclass(frozen=True)
class StoreFigures:
    pairs_per_second: float
    committed: int
    refused: int
    overspend: int
    left_reserved: int


async def store_throughput(path: Path, *, writers: int, pairs: int, users: int = 20) -> StoreFigures:
    limit = max(1, pairs // users)
    attempts = users * limit * 11 // 10  # 10 % more than the limits allow
    counter = itertools.count()
    committed = refused = 0
    async with open_store(f"sqlite:///{path}") as store:

        async def writer() -> None:
            nonlocal committed, refused
            while (n := next(counter)) < attempts:
                job = JobRow(
                    id=uuid.uuid4().hex,
                    guild_id=GUILD,
                    channel_id=1,
                    user_id=n % users,
                    command="draw",
                    params={"prompt": "bench"},
                    language="en",
                )
                if await store.create_job(job, window=WINDOW, limit=limit):
                    await store.finish_job(job.id, "done")
                    committed += 1
                else:
                    refused += 1

        started = time.monotonic()
        await asyncio.gather(*(writer() for _ in range(writers)))
        elapsed = time.monotonic() - started
        used = [await store.used_quota(guild_id=GUILD, user_id=u, window=WINDOW) for u in range(users)]
        totals = await store.ledger_totals()
    return StoreFigures(
        pairs_per_second=committed / elapsed,
        committed=committed,
        refused=refused,
        overspend=sum(max(0, n - limit) for n in used),
        left_reserved=totals["reserved"],
    )
